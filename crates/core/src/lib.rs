//! weft-core: the engine of weft. Data flows IR -> autodiff -> strategy -> passes -> schedule ->
//! plan -> exec, once per compile; then steps run in the executor.
//!
//! Dimension letters used in shape comments: B batch, T sequence, C channels, V vocabulary,
//! H heads, N rows (B*T), S stages, M micro-batches, R replicas.

pub mod autodiff;
pub mod checkpoint;
pub mod cluster;
pub mod collectives;
pub mod config;
pub mod data;
pub mod error;
pub mod exec;
pub mod generate;
pub mod ir;
pub mod optim;
pub mod passes;
pub mod process;
pub mod resource;
pub mod rng;
pub mod schedule;
pub mod session;
pub mod strategy;
pub mod summary;
pub mod tensor;

pub use error::{Error, Result};

#[cfg(test)]
mod fuzz_tests;
