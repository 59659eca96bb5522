//! Generation: a key/value-cached decoder for models with GPT-2's structure, so that each new
//! token costs one position instead of a full window.
//!
//! Table of contents:
//! - `structure` recognises GPT-2 in a model graph (parameter names and shapes, one attention
//!   op per block, the layer-norm epsilon), or says why a model is not cache-able
//! - `decoder`   `KvDecoder`: the weights on the host and one key/value cache per block; `feed`
//!   runs one position through the CPU backend's own kernels
//!
//! Sampling itself (temperature, top-k, top-p, stop sequences) is the caller's: the TS API
//! draws from the logits `feed` returns, or from a full-window `evaluate` when the model has no
//! cache-able structure, so both paths share one sampler.

mod decoder;
mod structure;

pub use decoder::KvDecoder;
pub use structure::{Gpt2Shape, gpt2_shape};
