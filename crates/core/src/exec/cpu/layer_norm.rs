//! LayerNorm over the last axis, as PyTorch: biased variance, eps inside the square root.
//!
//! Nothing is saved between forward and backward (the IR has one output per node), so both
//! backward kernels recompute each row's mean and 1/std; that is one extra pass over a row that
//! is already in cache. Statistics are two-pass (mean, then squared deviations) in 8-lane f32,
//! which avoids the cancellation of the one-pass E[x^2] - E[x]^2 formula.

use super::math;
use super::simd::simd_fn;
use super::util::{F32In, PAR_MIN_ELEMS, expect_shape, for_rows};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Rows per partial sum of the weight gradient.
const BLOCK_ROWS: usize = 32;

/// (mean, 1/sqrt(var + eps)) of one row.
#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = math::sum(x) / n;
    let var = math::sum_sq_dev(x, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Row length C of x [..., C], after checking that each of `params` is [C].
fn channels(op: &str, x: F32In, params: &[(&str, F32In)]) -> Result<usize> {
    let c = *x
        .shape
        .last()
        .ok_or_else(|| Error::shape(op, "input must have rank >= 1"))?;
    for (what, p) in params {
        if p.data.len() != c {
            return Err(Error::shape(
                op,
                format!("{what} {:?} must be [{c}] for input {:?}", p.shape, x.shape),
            ));
        }
    }
    Ok(c)
}

/// (x [..., C], w [C], b [C]) -> y = (x - mean) / sqrt(var + eps) * w + b.
pub(super) fn layer_norm_forward(
    x: F32In,
    w: F32In,
    b: F32In,
    eps: f32,
    y: &mut [f32],
    y_shape: &[usize],
) -> Result<()> {
    let c = channels("layer_norm", x, &[("weight", w), ("bias", b)])?;
    expect_shape("layer_norm", "output", y_shape, x.shape)?;
    for_rows(y, c, |r, out| {
        forward_row(&x.data[r * c..][..c], w.data, b.data, eps, out)
    });
    Ok(())
}

/// (x [..., C], w [C], dy [..., C]) -> dx. With g = dy * w and xhat the normalised row:
/// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
pub(super) fn layer_norm_backward(
    x: F32In,
    w: F32In,
    dy: F32In,
    eps: f32,
    dx: &mut [f32],
    dx_shape: &[usize],
) -> Result<()> {
    let c = channels("layer_norm_backward", x, &[("weight", w)])?;
    expect_shape("layer_norm_backward", "dy", dy.shape, x.shape)?;
    expect_shape("layer_norm_backward", "output", dx_shape, x.shape)?;
    for_rows(dx, c, |r, out| {
        backward_row(
            &x.data[r * c..][..c],
            w.data,
            &dy.data[r * c..][..c],
            eps,
            out,
        );
    });
    Ok(())
}

/// (sum(g), sum(g * xhat)) of one row with g = dy * w, over 8 lanes.
#[inline(always)]
fn grad_sums(x: &[f32], dy: &[f32], w: &[f32], mean: f32, rstd: f32) -> (f32, f32) {
    let (mut sg, mut sgx) = ([0.0f32; 8], [0.0f32; 8]);
    let (cx, cg, cw) = (x.chunks_exact(8), dy.chunks_exact(8), w.chunks_exact(8));
    let (mut tg, mut tgx) = (0.0f32, 0.0f32);
    for ((&v, &d), &wv) in cx
        .remainder()
        .iter()
        .zip(cg.remainder())
        .zip(cw.remainder())
    {
        let g = d * wv;
        tg += g;
        tgx += g * (v - mean) * rstd;
    }
    for ((xv, dv), wv) in cx.zip(cg).zip(cw) {
        for l in 0..8 {
            let g = dv[l] * wv[l];
            sg[l] += g;
            sgx[l] += g * (xv[l] - mean) * rstd;
        }
    }
    (tg + sg.iter().sum::<f32>(), tgx + sgx.iter().sum::<f32>())
}

/// (x [..., C], dy [..., C]) -> dw [C] = sum over rows of dy * xhat. Row blocks accumulate
/// into f64 partials in parallel (the sum runs over every row of the batch).
pub(super) fn layer_norm_backward_weight(
    x: F32In,
    dy: F32In,
    eps: f32,
    dw: &mut [f32],
    dw_shape: &[usize],
) -> Result<()> {
    let c = channels("layer_norm_backward_weight", x, &[])?;
    expect_shape("layer_norm_backward_weight", "dy", dy.shape, x.shape)?;
    expect_shape("layer_norm_backward_weight", "output", dw_shape, &[c])?;
    if c == 0 {
        return Ok(());
    }
    // Fixed blocks of rows, partials added in order: the result does not depend on the thread
    // count or on rayon's work stealing.
    let block = |(xs, gs): (&[f32], &[f32])| {
        let mut acc = vec![0.0f64; c];
        weight_grad_rows(xs, gs, eps, &mut acc);
        acc
    };
    let span = c * BLOCK_ROWS;
    let blocks = x.data.chunks(span).zip(dy.data.chunks(span));
    let parts: Vec<Vec<f64>> = if x.data.len() >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1
    {
        x.data
            .par_chunks(span)
            .zip(dy.data.par_chunks(span))
            .map(block)
            .collect()
    } else {
        blocks.map(block).collect()
    };
    let total = parts
        .into_iter()
        .reduce(add_vecs)
        .unwrap_or_else(|| vec![0.0; c]);
    for (o, a) in dw.iter_mut().zip(total) {
        *o = a as f32;
    }
    Ok(())
}

fn add_vecs(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    a
}

simd_fn! {
    /// One row of the forward: out = (x - mean) * rstd * w + b.
    fn forward_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
        let (mean, rstd) = row_stats(x, eps);
        for (((o, &v), &wv), &bv) in out.iter_mut().zip(x).zip(w).zip(b) {
            *o = (v - mean) * rstd * wv + bv;
        }
    }
}

simd_fn! {
    /// One row of dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w.
    fn backward_row(x: &[f32], w: &[f32], dy: &[f32], eps: f32, out: &mut [f32]) {
        let (mean, rstd) = row_stats(x, eps);
        let (sum_g, sum_gx) = grad_sums(x, dy, w, mean, rstd);
        let n = x.len() as f32;
        let (mg, mgx) = (sum_g / n, sum_gx / n);
        for (((o, &v), &g), &wv) in out.iter_mut().zip(x).zip(dy).zip(w) {
            let xhat = (v - mean) * rstd;
            *o = rstd * (g * wv - mg - xhat * mgx);
        }
    }
}

simd_fn! {
    /// acc [C] += dy * xhat for each row of x, dy [R, C].
    fn weight_grad_rows(x: &[f32], dy: &[f32], eps: f32, acc: &mut [f64]) {
        let c = acc.len();
        for (xr, gr) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
            let (mean, rstd) = row_stats(xr, eps);
            for ((a, &v), &g) in acc.iter_mut().zip(xr).zip(gr) {
                *a += (g * ((v - mean) * rstd)) as f64;
            }
        }
    }
}
