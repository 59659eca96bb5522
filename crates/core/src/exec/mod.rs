//! Execution: the device contract (`Backend`), the CPU backend, device programs with liveness,
//! the buffer pool with memory accounting, and the plan interpreter.

mod backend;
pub mod cpu;
mod gemm_bench;
pub mod half;
mod interpreter;
mod memory;
mod plan;
pub mod tp;

pub use backend::{
    Adam, AsHostView, Backend, HostData, HostView, KernelCtx, Sgd, TensorRef, UpdateRule,
    touches_half, widened_refs,
};
pub use cpu::CpuBackend;
pub use gemm_bench::cpu_gemm_gflops;
pub use interpreter::{
    Awaited, Executor, GradHook, GradReduce, GradSink, Link, Residency, init_values,
};
pub use memory::{Category, MemoryStats, grow_exact};
pub use plan::{Action, DeviceId, Program, ProgramKind};
