//! Checkpoints: the safetensors format (read, atomic write, f16/bf16 widening by `tensor::half`), a check of a
//! file against the tensors a model expects, and the `model` + `optimizer` + `weft.json`
//! directory layout with crash-safe saves.

pub mod atomic;
mod check;
pub mod dir;
pub mod hf;
pub mod safetensors;

pub use check::check_against;
pub use dir::{CheckpointData, OptimizerState, check_weights_of_dir, load_dir, save_dir};
pub use safetensors::{SafeTensors, TensorEntry};
