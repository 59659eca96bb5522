//! Batched matmul through the `gemm` crate, plus the strided gemm wrapper attention reuses.
//!
//! gemm computes dst := alpha*dst + beta*(lhs*rhs) on strided views; we always call it with
//! alpha = 0, read_dst = false (overwrite) and beta = the scale we want (1 for a plain product).
//! Transposes are expressed through strides, never by copying.

use super::util::{F32In, numel};
use crate::error::{Error, Result};
use gemm::Parallelism;
use rayon::prelude::*;

/// Products smaller than this (m*n*k) run single-threaded: gemm's thread fan-out costs more.
const PAR_MIN_FLOPS: usize = 64 * 64 * 64;

/// A strided read-only matrix view: element (i, j) is `data[off + i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub(super) struct MatRef<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl MatRef<'_> {
    /// Start pointer after checking every element of a rows x cols view lies inside `data`.
    fn ptr(&self, rows: usize, cols: usize) -> Result<*const f32> {
        let last = self.off + (rows.max(1) - 1) * self.rs + (cols.max(1) - 1) * self.cs;
        if rows > 0 && cols > 0 && last >= self.data.len() {
            return Err(Error::internal(format!(
                "matmul view [{rows}x{cols}] at {} overruns a buffer of {}",
                self.off,
                self.data.len()
            )));
        }
        Ok(self.data[self.off.min(self.data.len())..].as_ptr())
    }
}

/// Thread fan-out for one m x n x k product, by size.
pub(super) fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m.saturating_mul(n).saturating_mul(k) > PAR_MIN_FLOPS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// dst [m, n] (row stride `dst_rs`, unit column stride) = beta * lhs [m, k] * rhs [k, n].
///
/// # Safety
/// `dst` must be valid for writes of the m x n view with row stride `dst_rs`, and no other thread
/// may touch those elements during the call. The input views are bounds-checked here.
pub(super) unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: MatRef,
    rhs: MatRef,
    beta: f32,
    par: Parallelism,
) -> Result<()> {
    let lp = lhs.ptr(m, k)?;
    let rp = rhs.ptr(k, n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty sum: gemm's behaviour with read_dst = false and k = 0 is not documented.
        for i in 0..m {
            // SAFETY: row i of the m x n destination view, valid by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n) }.fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: the input views were bounds-checked above; dst is the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lp,
            lhs.cs as isize,
            lhs.rs as isize,
            rp,
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            beta,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Safe gemm into a row-major slice `dst` [m, n] at offset `off` with row stride `rs`.
pub(super) fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    off: usize,
    rs: usize,
    lhs: MatRef,
    rhs: MatRef,
    beta: f32,
    par: Parallelism,
) -> Result<()> {
    if m > 0 && n > 0 && off + (m - 1) * rs + n > dst.len() {
        return Err(Error::internal(
            "matmul destination view overruns its buffer",
        ));
    }
    // SAFETY: the destination view was bounds-checked above and `dst` is borrowed mutably.
    let start = off.min(dst.len());
    unsafe { gemm_raw(m, n, k, dst[start..].as_mut_ptr(), rs, lhs, rhs, beta, par) }
}

/// The resolved geometry of a MatMul: batch count, per-matrix sizes, which side is shared.
struct Plan {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    a_shared: bool,
    b_shared: bool,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize], trans_a: bool, trans_b: bool) -> Result<Plan> {
    let err = |msg: String| Error::shape("matmul", msg);
    if a.len() < 2 || b.len() < 2 {
        return Err(err(format!("operands need rank >= 2, got {a:?} and {b:?}")));
    }
    let (ab, am) = a.split_at(a.len() - 2);
    let (bb, bm) = b.split_at(b.len() - 2);
    let (m, ka) = if trans_a {
        (am[1], am[0])
    } else {
        (am[0], am[1])
    };
    let (kb, n) = if trans_b {
        (bm[1], bm[0])
    } else {
        (bm[0], bm[1])
    };
    if ka != kb {
        return Err(err(format!(
            "inner dimensions differ: a {a:?} (trans_a={trans_a}) and b {b:?} (trans_b={trans_b})"
        )));
    }
    let (a_shared, b_shared) = (
        ab.is_empty() && !bb.is_empty(),
        bb.is_empty() && !ab.is_empty(),
    );
    if !a_shared && !b_shared && ab != bb {
        return Err(err(format!("batch dimensions differ: a {a:?}, b {b:?}")));
    }
    let batch_dims = if ab.is_empty() { bb } else { ab };
    let mut out_shape = batch_dims.to_vec();
    out_shape.extend([m, n]);
    Ok(Plan {
        batch: numel(batch_dims),
        m,
        n,
        k: ka,
        a_shared,
        b_shared,
        out_shape,
    })
}

/// out [..., M, N] = a [..., M, K] (or [..., K, M]) * b [..., K, N] (or [..., N, K]).
pub(super) fn matmul_forward(
    a: F32In,
    b: F32In,
    trans_a: bool,
    trans_b: bool,
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<()> {
    let p = plan(a.shape, b.shape, trans_a, trans_b)?;
    super::util::expect_shape("matmul", "output", out_shape, &p.out_shape)?;
    let (m, n, k) = (p.m, p.n, p.k);
    // Row-major storage strides of one logical [m, k] / [k, n] operand.
    let (a_rs, a_cs) = if trans_a { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if trans_b { (1, k) } else { (n, 1) };
    let view = |data, off, rs, cs| MatRef { data, off, rs, cs };
    if p.b_shared && !trans_a {
        // A shared right operand and a row-major left one: the batch folds into M, one big gemm.
        let mb = p.batch * m;
        let (lhs, rhs) = (view(a.data, 0, k, 1), view(b.data, 0, b_rs, b_cs));
        return gemm_into((mb, n, k), out, 0, n, lhs, rhs, 1.0, parallelism(mb, n, k));
    }
    let a_step = if p.a_shared { 0 } else { m * k };
    let b_step = if p.b_shared { 0 } else { k * n };
    let one = |i: usize, dst: &mut [f32], par| {
        let lhs = view(a.data, i * a_step, a_rs, a_cs);
        let rhs = view(b.data, i * b_step, b_rs, b_cs);
        gemm_into((m, n, k), dst, 0, n, lhs, rhs, 1.0, par)
    };
    if m * n == 0 {
        return Ok(());
    }
    let per = parallelism(m, n, k);
    if matches!(per, Parallelism::None) && p.batch > 1 && rayon::current_num_threads() > 1 {
        // Many small products: parallelise across the batch instead of inside gemm.
        out.par_chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(i, dst)| one(i, dst, Parallelism::None))
    } else {
        out.chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(i, dst)| one(i, dst, per))
    }
}
