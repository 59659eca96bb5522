//! Checkpoints: the safetensors format (read, atomic write; f16/bf16 widening by `tensor::half`),
//! a check of a file against the tensors a model expects, the `model` + `optimizer` +
//! `weft.json` files of one checkpoint (`dir`), and the root of step directories a trainer saves
//! into (`steps`, with the temp entries of its writers in `writers`).

pub mod atomic;
mod check;
pub mod dir;
pub mod hf;
pub mod safetensors;
pub mod steps;
mod writers;

pub use check::check_against;
pub use dir::{CheckpointData, OptimizerState, check_weights_of_dir, load_dir, save_dir};
pub use safetensors::{SafeTensors, TensorEntry};
