//! Inverted dropout. The keep mask is a pure function of (seed, step, element index) through
//! `rng::dropout_keep`, so the backward (and any recomputed forward) regenerates exactly the
//! forward's mask without storing it, and the result does not depend on thread count.

use super::simd::simd_fn;
use super::util::for_chunks;
use crate::error::{Error, Result};
use crate::rng;

/// out[i] = x[i] / (1 - p) where element i is kept, else 0. Serves both directions: the
/// backward of dropout is the same masked scaling applied to dy.
pub(super) fn dropout_apply(
    op: &str,
    x: &[f32],
    p: f32,
    seed: u64,
    step: u64,
    out: &mut [f32],
) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::shape(op, format!("p must lie in [0, 1], got {p}")));
    }
    if p >= 1.0 {
        // Everything dropped; 1/(1-p) would be inf and 0 * inf NaN.
        out.fill(0.0);
        return Ok(());
    }
    let scale = 1.0 / (1.0 - p);
    for_chunks(out, |start, o| {
        dropout_chunk(&x[start..], (p, seed, step), start as u64, scale, o)
    });
    Ok(())
}

/// y = dropout(x).
pub(super) fn dropout_forward(
    x: &[f32],
    p: f32,
    seed: u64,
    step: u64,
    y: &mut [f32],
) -> Result<()> {
    dropout_apply("dropout", x, p, seed, step, y)
}

/// dx = dy masked and scaled exactly as the forward of the same (p, seed, step).
pub(super) fn dropout_backward(
    dy: &[f32],
    p: f32,
    seed: u64,
    step: u64,
    dx: &mut [f32],
) -> Result<()> {
    dropout_apply("dropout_backward", dy, p, seed, step, dx)
}

simd_fn! {
    /// One chunk starting at element `start`: the mask hashes 64-bit counters, which AVX-512
    /// multiplies natively (SSE2 emulates 64-bit multiplies).
    fn dropout_chunk(x: &[f32], mask: (f32, u64, u64), start: u64, scale: f32, out: &mut [f32]) {
        let (p, seed, step) = mask;
        for (j, (o, &v)) in out.iter_mut().zip(x).enumerate() {
            let keep = rng::dropout_keep(seed, step, start + j as u64, p);
            *o = if keep { v * scale } else { 0.0 };
        }
    }
}
