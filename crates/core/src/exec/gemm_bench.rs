//! Benchmark G of BENCHMARKS.md: f32 GEMM through the backend's own matmul kernel, so the figure
//! is what training steps get, not a separate code path.

use super::backend::{Backend, KernelCtx, TensorRef};
use super::cpu::CpuBackend;
use crate::error::Result;
use crate::ir::{DType, Op};
use crate::tensor::HostData;
use std::time::Instant;

/// Median GFLOP/s (2n^3 / t) of `reps` n x n x n matmuls after one warm-up, on `threads`
/// threads (0: all cores).
pub fn cpu_gemm_gflops(n: usize, reps: usize, threads: usize) -> Result<f64> {
    let backend = CpuBackend::new(threads);
    let data: Vec<f32> = (0..n * n)
        .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
        .collect();
    let a = backend.upload(&HostData::F32(data))?;
    let dims = [n, n];
    let mut out = backend.alloc(DType::F32, n * n)?;
    let op = Op::MatMul {
        trans_a: false,
        trans_b: false,
    };
    let ctx = KernelCtx::default();
    let mut times = Vec::with_capacity(reps);
    for i in 0..=reps {
        let inputs = [
            TensorRef {
                buf: &a,
                shape: &dims,
                dtype: DType::F32,
            },
            TensorRef {
                buf: &a,
                shape: &dims,
                dtype: DType::F32,
            },
        ];
        let t0 = Instant::now();
        backend.execute(&op, &inputs, &mut out, &dims, &ctx)?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(2.0 * (n as f64).powi(3) / median / 1e9)
}

#[cfg(test)]
mod tests {
    /// Prints G figures: `cargo test --release -p weft-core --lib gemm_bench -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark, run by hand"]
    fn print_gemm_gflops() {
        for n in [256, 512, 1024, 2048] {
            let g = super::cpu_gemm_gflops(n, 5, 0).unwrap();
            eprintln!("gemm n={n}: {g:.1} GFLOP/s");
        }
    }

    #[test]
    fn gemm_bench_reports_a_positive_rate() {
        assert!(super::cpu_gemm_gflops(64, 2, 1).unwrap() > 0.0);
    }
}
