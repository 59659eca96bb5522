//! Batched matmul through cuBLAS. cuBLAS is column-major; a row-major [M, N] matrix is the
//! column-major [N, M] one, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the call
//! swaps the operands and keeps each one's transpose flag. A rank-2 operand shared across the
//! other's batch gets batch stride 0. The same call serves bf16/f16 with f32 accumulation
//! (cudarc's `Gemm<half::bf16>` uses `cublasGemmStridedBatchedEx` with `CUBLAS_COMPUTE_32F`).

use super::{Launch, f32s, numel};
use crate::buffer::CudaBuffer;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::CudaSlice;
use weft_core::exec::TensorRef;
use weft_core::{Error, Result};

fn int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::unsupported("matmul on CUDA", format!("{what} = {v} exceeds i32")))
}

fn op_flag(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

impl Launch<'_> {
    pub(super) fn matmul(
        &self,
        inputs: &[TensorRef<'_, CudaBuffer>],
        trans_a: bool,
        trans_b: bool,
        y: &mut CudaSlice<f32>,
        out_shape: &[usize],
    ) -> Result<()> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let (ra, rb) = (a.shape.len(), b.shape.len());
        let (m, k) = if trans_a {
            (a.shape[ra - 1], a.shape[ra - 2])
        } else {
            (a.shape[ra - 2], a.shape[ra - 1])
        };
        let n = if trans_b {
            b.shape[rb - 2]
        } else {
            b.shape[rb - 1]
        };
        let batch = numel(&out_shape[..out_shape.len() - 2]);
        if batch == 0 || m == 0 || n == 0 {
            return Ok(());
        }
        let shared = |rank: usize, size: usize| if rank == 2 { 0 } else { size as i64 };
        let cfg = StridedBatchedConfig {
            gemm: GemmConfig {
                transa: op_flag(trans_b),
                transb: op_flag(trans_a),
                m: int("n", n)?,
                n: int("m", m)?,
                k: int("k", k)?,
                alpha: 1.0f32,
                lda: int("ldb", if trans_b { k } else { n })?,
                ldb: int("lda", if trans_a { m } else { k })?,
                beta: 0.0f32,
                ldc: int("ldc", n)?,
            },
            batch_size: int("batch", batch)?,
            stride_a: shared(rb, k * n),
            stride_b: shared(ra, m * k),
            stride_c: (m * n) as i64,
        };
        let (xa, xb) = (f32s("matmul", a)?, f32s("matmul", b)?);
        // SAFETY: dimensions, leading dimensions and strides derive from shapes that `check`
        // validated against the buffers' lengths.
        unsafe { self.b.dev.blas.gemm_strided_batched(cfg, xb, xa, y) }.map_err(|e| Error::Device {
            message: format!("cuBLAS matmul [{m}x{k}] x [{k}x{n}] x {batch}: {e:?}"),
        })
    }
}
