//! Benchmark hooks for `npm run bench` (G: the CPU backend's GEMM).

use crate::error::{self as js, guard};

/// Median GFLOP/s of the CPU backend's n x n f32 matmul over `reps` runs.
#[napi]
pub fn bench_gemm(n: u32, reps: u32, threads: u32) -> js::Result<f64> {
    guard(|| weft_core::exec::cpu_gemm_gflops(n as usize, reps.max(1) as usize, threads as usize))
}
