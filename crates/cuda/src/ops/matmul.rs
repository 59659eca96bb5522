//! Batched matmul through cuBLAS. cuBLAS is column-major; a row-major [M, N] matrix is the
//! column-major [N, M] one, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the call
//! swaps the operands and keeps each one's transpose flag. A rank-2 operand shared across the
//! other's batch gets batch stride 0. f32 runs `cublasSgemmStridedBatched` (no TF32); bf16 and
//! f16 run `cublasGemmStridedBatchedEx` with `CUBLAS_COMPUTE_32F` (cudarc's `Gemm<half::bf16>`),
//! so 16-bit products accumulate in f32 and are rounded once.

use super::{Launch, numel};
use crate::buffer::{CudaBuffer, Data};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};
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

/// One product's dimensions.
pub(super) struct Geom {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    trans_a: bool,
    trans_b: bool,
    rank_a: usize,
    rank_b: usize,
}

impl Geom {
    pub(super) fn new(
        a: &[usize],
        b: &[usize],
        trans_a: bool,
        trans_b: bool,
        out: &[usize],
    ) -> Geom {
        let (ra, rb) = (a.len(), b.len());
        let (m, k) = if trans_a {
            (a[ra - 1], a[ra - 2])
        } else {
            (a[ra - 2], a[ra - 1])
        };
        let n = if trans_b { b[rb - 2] } else { b[rb - 1] };
        Geom {
            m,
            n,
            k,
            batch: numel(&out[..out.len() - 2]),
            trans_a,
            trans_b,
            rank_a: ra,
            rank_b: rb,
        }
    }

    pub(super) fn config<T>(&self, one: T, zero: T) -> Result<StridedBatchedConfig<T>> {
        let (m, n, k) = (self.m, self.n, self.k);
        let shared = |rank: usize, size: usize| if rank == 2 { 0 } else { size as i64 };
        Ok(StridedBatchedConfig {
            gemm: GemmConfig {
                transa: op_flag(self.trans_b),
                transb: op_flag(self.trans_a),
                m: int("n", n)?,
                n: int("m", m)?,
                k: int("k", k)?,
                alpha: one,
                lda: int("ldb", if self.trans_b { k } else { n })?,
                ldb: int("lda", if self.trans_a { m } else { k })?,
                beta: zero,
                ldc: int("ldc", n)?,
            },
            batch_size: int("batch", self.batch)?,
            stride_a: shared(self.rank_b, k * n),
            stride_b: shared(self.rank_a, m * k),
            stride_c: (m * n) as i64,
        })
    }
}

/// A 16-bit buffer's bits viewed as `T` (half::bf16 or half::f16, both 2 bytes).
fn view<T>(s: &CudaSlice<u16>) -> Result<CudaView<'_, T>> {
    // SAFETY: 2-byte float types over 2-byte words of the same count.
    unsafe { s.transmute::<T>(s.len()) }.ok_or_else(|| Error::internal("matmul: 16-bit view"))
}

fn view_mut<T>(s: &mut CudaSlice<u16>) -> Result<CudaViewMut<'_, T>> {
    let n = s.len();
    // SAFETY: as in `view`.
    unsafe { s.transmute_mut::<T>(n) }.ok_or_else(|| Error::internal("matmul: 16-bit view"))
}

fn blas_err(g: &Geom, e: impl std::fmt::Debug) -> Error {
    Error::Device {
        message: format!(
            "cuBLAS matmul [{}x{}] x [{}x{}] x {}: {e:?}",
            g.m, g.k, g.k, g.n, g.batch
        ),
    }
}

impl Launch<'_> {
    pub(super) fn matmul(
        &self,
        inputs: &[TensorRef<'_, CudaBuffer>],
        trans_a: bool,
        trans_b: bool,
        out: &mut CudaBuffer,
        out_shape: &[usize],
    ) -> Result<()> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let g = Geom::new(a.shape, b.shape, trans_a, trans_b, out_shape);
        let (m, n) = (g.m, g.n);
        if g.batch == 0 || m == 0 || n == 0 {
            return Ok(());
        }
        let blas: &CudaBlas = &self.b.dev.blas;
        // SAFETY (each call): dimensions, leading dimensions and strides derive from shapes
        // that `check` validated against the buffers' lengths; operands are swapped (C^T).
        match (a.buf.data(), b.buf.data(), out.data_mut()) {
            (Data::F32(xa), Data::F32(xb), Data::F32(y)) => unsafe {
                blas.gemm_strided_batched(g.config(1.0f32, 0.0)?, xb, xa, y)
            },
            (Data::BF16(xa), Data::BF16(xb), Data::BF16(y)) => {
                let cfg = g.config(half::bf16::ONE, half::bf16::ZERO)?;
                let (xa, xb, mut y) = (view(xa)?, view(xb)?, view_mut(y)?);
                unsafe { blas.gemm_strided_batched(cfg, &xb, &xa, &mut y) }
            }
            (Data::F16(xa), Data::F16(xb), Data::F16(y)) => {
                let cfg = g.config(half::f16::ONE, half::f16::ZERO)?;
                let (xa, xb, mut y) = (view(xa)?, view(xb)?, view_mut(y)?);
                unsafe { blas.gemm_strided_batched(cfg, &xb, &xa, &mut y) }
            }
            _ => {
                return Err(Error::internal(
                    "matmul: operand dtypes differ from the output's",
                ));
            }
        }
        .map_err(|e| blas_err(&g, e))
    }
}
