//! Execution: the device contract (`Backend`), the CPU backend, device programs with liveness,
//! the buffer pool with memory accounting, and the plan interpreter.

mod backend;
pub mod cpu;
mod interpreter;
mod memory;
mod plan;

pub use backend::{Backend, HostData, KernelCtx, TensorRef, UpdateRule};
pub use cpu::CpuBackend;
pub use interpreter::{Executor, init_values};
pub use memory::{Category, MemoryStats};
pub use plan::{Action, DeviceId, Program, ProgramKind};
