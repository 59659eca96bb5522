//! Execution: the device contract (`Backend`), the CPU backend, the memory planner and the
//! plan interpreter.

mod backend;
pub mod cpu;

pub use backend::{Backend, HostData, KernelCtx, TensorRef, UpdateRule};
