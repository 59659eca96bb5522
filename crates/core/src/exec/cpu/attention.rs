//! Fused causal multi-head self-attention, forward and backward, on GPT-2's packed layout.
//!
//! qkv [B, T, 3C] holds q | k | v on the last axis; head h uses channels [h*D, (h+1)*D) of each,
//! D = C/H, and the scores are scaled by 1/sqrt(D). Work is split over (batch, head) pairs with
//! rayon, each pair running single-threaded gemms on strided views straight into qkv (no
//! gathering copies). The probabilities are never stored: the backward recomputes them per
//! pair, trading a T*T*D gemm for B*H*T*T floats of memory.
//!
//! Causality is exploited by rows blocks of `BLOCK`: block [i0, i1) only needs key columns
//! [0, i1), which halves the work for long sequences. Inside the diagonal block the entries
//! above the diagonal are zeroed so the following gemms can read the whole block rectangle.

use super::math;
use super::matmul::{MatRef, gemm_raw};
use super::simd::simd_fn;
use super::util::{F32In, expect_shape};
use crate::error::{Error, Result};
use gemm::Parallelism;
use rayon::prelude::*;

const BLOCK: usize = 64;

/// Shape of one attention launch.
#[derive(Clone, Copy)]
struct Geom {
    b: usize,
    t: usize,
    c: usize,
    h: usize,
    d: usize,
}

impl Geom {
    fn new(op: &str, qkv: &[usize], heads: usize) -> Result<Geom> {
        let &[b, t, c3] = qkv else {
            return Err(Error::shape(
                op,
                format!("qkv must be [B, T, 3C], got {qkv:?}"),
            ));
        };
        if c3 % 3 != 0 || heads == 0 || (c3 / 3) % heads != 0 {
            return Err(Error::shape(
                op,
                format!("qkv {qkv:?}: last axis must be 3C with C divisible by heads={heads}"),
            ));
        }
        let c = c3 / 3;
        Ok(Geom {
            b,
            t,
            c,
            h: heads,
            d: c / heads,
        })
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }

    /// Offset in qkv of row 0 of part `part` (0 q, 1 k, 2 v) of head `h` in batch `b`.
    fn qkv_off(&self, b: usize, part: usize, h: usize) -> usize {
        b * self.t * 3 * self.c + part * self.c + h * self.d
    }

    /// Offset in a [B, T, C] tensor of row 0 of head `h` in batch `b`.
    fn btc_off(&self, b: usize, h: usize) -> usize {
        b * self.t * self.c + h * self.d
    }
}

/// A raw output pointer shared by the (batch, head) tasks.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    /// The element `off` of the output. A method (not `.0`) so closures capture the whole
    /// Sync wrapper rather than the bare pointer field.
    ///
    /// # Safety
    /// `off` must lie inside the output buffer.
    unsafe fn at(self, off: usize) -> *mut f32 {
        unsafe { self.0.add(off) }
    }
}
// SAFETY: tasks write pairwise-disjoint (batch, head) column blocks of the buffer, see callers.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Row-major view with row stride `rs` starting at `off`.
fn rows(data: &[f32], off: usize, rs: usize) -> MatRef<'_> {
    MatRef {
        data,
        off,
        rs,
        cs: 1,
    }
}

/// Transposed view: element (i, j) is row j, column i of the row-major matrix at `off`.
fn cols(data: &[f32], off: usize, rs: usize) -> MatRef<'_> {
    MatRef {
        data,
        off,
        rs: 1,
        cs: rs,
    }
}

/// The row blocks [i0, i1) of a length-t sequence.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t.div_ceil(BLOCK)).map(move |i| (i * BLOCK, ((i + 1) * BLOCK).min(t)))
}

/// Scores for row block [i0, i1) of one (batch, head) into p [T, T], turned into causal softmax
/// probabilities in place; columns (i, i1) of each row are zeroed.
fn probs_block(
    g: Geom,
    qkv: &[f32],
    b: usize,
    hd: usize,
    (i0, i1): (usize, usize),
    p: &mut [f32],
) -> Result<()> {
    let three_c = 3 * g.c;
    let q = rows(qkv, g.qkv_off(b, 0, hd) + i0 * three_c, three_c);
    let kt = cols(qkv, g.qkv_off(b, 1, hd), three_c);
    // SAFETY: p is a private T*T scratch; the view [i1-i0, i1] at row i0 (stride T) lies inside it.
    unsafe {
        let dst = p.as_mut_ptr().add(i0 * g.t);
        gemm_raw(
            i1 - i0,
            i1,
            g.d,
            dst,
            g.t,
            q,
            kt,
            g.scale(),
            Parallelism::None,
        )?;
    }
    causal_softmax_rows(p, g.t, i0, i1);
    Ok(())
}

simd_fn! {
    /// Rows [i0, i1) of p [T, T] (scores in columns [0, i1)): causal softmax in place, row i
    /// over columns [0, i]; columns (i, i1) zeroed.
    fn causal_softmax_rows(p: &mut [f32], t: usize, i0: usize, i1: usize) {
        for i in i0..i1 {
            let row = &mut p[i * t..i * t + i1];
            let (live, masked) = row.split_at_mut(i + 1);
            let m = math::max(live);
            for v in live.iter_mut() {
                *v = math::exp(*v - m);
            }
            let inv = 1.0 / math::sum(live);
            for v in live.iter_mut() {
                *v *= inv;
            }
            masked.fill(0.0);
        }
    }
}

simd_fn! {
    /// Rows [i0, i1) of ds [T, T] holding dP: dS = P * (dP - rowsum(dP * P)) * scale in place,
    /// zero above the diagonal.
    fn score_grad_rows(p: &[f32], ds: &mut [f32], t: usize, rows: (usize, usize), scale: f32) {
        let (i0, i1) = rows;
        for i in i0..i1 {
            let pr = &p[i * t..i * t + i + 1];
            let row = &mut ds[i * t..i * t + i1];
            let (live, masked) = row.split_at_mut(i + 1);
            let s = math::dot(pr, live);
            for (v, &pv) in live.iter_mut().zip(pr) {
                *v = pv * (*v - s) * scale;
            }
            masked.fill(0.0);
        }
    }
}

/// (qkv [B, T, 3C]) -> out [B, T, C].
pub(super) fn causal_attention_forward(
    qkv: F32In,
    heads: usize,
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<()> {
    let g = Geom::new("causal_attention", qkv.shape, heads)?;
    expect_shape("causal_attention", "output", out_shape, &[g.b, g.t, g.c])?;
    let shared = SharedOut(out.as_mut_ptr());
    (0..g.b * g.h).into_par_iter().try_for_each_init(
        || vec![0.0f32; g.t * g.t], // p [T, T]
        |p, bh| {
            let (b, hd) = (bh / g.h, bh % g.h);
            for blk in blocks(g.t) {
                probs_block(g, qkv.data, b, hd, blk, p)?;
                let (i0, i1) = blk;
                let pv = rows(p, i0 * g.t, g.t);
                let v = rows(qkv.data, g.qkv_off(b, 2, hd), 3 * g.c);
                // SAFETY: out is [B, T, C] (checked above); this task alone writes rows
                // [i0, i1) x channels [hd*D, (hd+1)*D) of batch b.
                unsafe {
                    let dst = shared.at(g.btc_off(b, hd) + i0 * g.c);
                    gemm_raw(i1 - i0, g.d, i1, dst, g.c, pv, v, 1.0, Parallelism::None)?;
                }
            }
            Ok(())
        },
    )
}

/// (qkv [B, T, 3C], dy [B, T, C]) -> dqkv [B, T, 3C].
pub(super) fn causal_attention_backward(
    qkv: F32In,
    dy: F32In,
    heads: usize,
    dqkv: &mut [f32],
    dqkv_shape: &[usize],
) -> Result<()> {
    let op = "causal_attention_backward";
    let g = Geom::new(op, qkv.shape, heads)?;
    expect_shape(op, "dy", dy.shape, &[g.b, g.t, g.c])?;
    expect_shape(op, "output", dqkv_shape, qkv.shape)?;
    let shared = SharedOut(dqkv.as_mut_ptr());
    (0..g.b * g.h).into_par_iter().try_for_each_init(
        || (vec![0.0f32; g.t * g.t], vec![0.0f32; g.t * g.t]), // p, ds: [T, T] each
        |(p, ds), bh| {
            let (b, hd) = (bh / g.h, bh % g.h);
            for blk in blocks(g.t) {
                probs_block(g, qkv.data, b, hd, blk, p)?;
                score_grad_block(g, qkv.data, dy.data, b, hd, blk, p, ds)?;
            }
            // SAFETY: dqkv is [B, T, 3C] (checked above); this task alone writes the q, k and
            // v channel blocks of head hd in batch b.
            unsafe { head_grads(g, qkv.data, dy.data, b, hd, p, ds, shared) }
        },
    )
}

/// dS for row block [i0, i1): dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) * scale, written
/// into ds with the entries above the diagonal zeroed like p's.
fn score_grad_block(
    g: Geom,
    qkv: &[f32],
    dy: &[f32],
    b: usize,
    hd: usize,
    (i0, i1): (usize, usize),
    p: &[f32],
    ds: &mut [f32],
) -> Result<()> {
    let d_o = rows(dy, g.btc_off(b, hd) + i0 * g.c, g.c);
    let vt = cols(qkv, g.qkv_off(b, 2, hd), 3 * g.c);
    // SAFETY: ds is a private T*T scratch; the view [i1-i0, i1] at row i0 lies inside it.
    unsafe {
        let dst = ds.as_mut_ptr().add(i0 * g.t);
        gemm_raw(i1 - i0, i1, g.d, dst, g.t, d_o, vt, 1.0, Parallelism::None)?;
    }
    score_grad_rows(p, ds, g.t, (i0, i1), g.scale());
    Ok(())
}

/// dQ = dS K, dK = dS^T Q, dV = P^T dO for one (batch, head), written into dqkv.
///
/// # Safety
/// `out` must point at a [B, T, 3C] buffer of which no other thread touches this head's blocks.
unsafe fn head_grads(
    g: Geom,
    qkv: &[f32],
    dy: &[f32],
    b: usize,
    hd: usize,
    p: &[f32],
    ds: &[f32],
    out: SharedOut,
) -> Result<()> {
    let (t, three_c) = (g.t, 3 * g.c);
    let none = Parallelism::None;
    for (i0, i1) in blocks(t) {
        // dQ rows [i0, i1) only see keys [0, i1).
        let k = rows(qkv, g.qkv_off(b, 1, hd), three_c);
        let dq = unsafe { out.at(g.qkv_off(b, 0, hd) + i0 * three_c) };
        unsafe {
            gemm_raw(
                i1 - i0,
                g.d,
                i1,
                dq,
                three_c,
                rows(ds, i0 * t, t),
                k,
                1.0,
                none,
            )?
        };
        // dK / dV rows [i0, i1) are only seen by queries [i0, T).
        let dst_t = cols(ds, i0 * t + i0, t);
        let q = rows(qkv, g.qkv_off(b, 0, hd) + i0 * three_c, three_c);
        let dk = unsafe { out.at(g.qkv_off(b, 1, hd) + i0 * three_c) };
        unsafe { gemm_raw(i1 - i0, g.d, t - i0, dk, three_c, dst_t, q, 1.0, none)? };
        let pt = cols(p, i0 * t + i0, t);
        let d_o = rows(dy, g.btc_off(b, hd) + i0 * g.c, g.c);
        let dv = unsafe { out.at(g.qkv_off(b, 2, hd) + i0 * three_c) };
        unsafe { gemm_raw(i1 - i0, g.d, t - i0, dv, three_c, pt, d_o, 1.0, none)? };
    }
    Ok(())
}
