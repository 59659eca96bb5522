//! Execution: the device contract (`Backend`), the CPU backend, device programs with liveness,
//! the buffer pool with memory accounting, and the plan interpreter.

mod backend;
pub mod cpu;
mod gemm_bench;
mod interpreter;
mod memory;
mod plan;
pub mod tp;

pub use backend::{
    Adam, Backend, KernelCtx, Sgd, TensorRef, UpdateRule, touches_half, widened_refs,
};
// Host data lives in the bottom layer; re-exported for the paths callers already use.
pub use crate::tensor::{AsHostView, HostData, HostView};
pub use cpu::CpuBackend;
pub use gemm_bench::cpu_gemm_gflops;
pub use interpreter::{
    Awaited, Executor, GradHook, GradReduce, GradSink, Link, Residency, init_values,
};
pub use memory::{Category, MemoryStats, grow_exact};
pub use plan::{Action, DeviceId, Program, ProgramKind};
