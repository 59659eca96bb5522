//! Row-wise softmax and cross-entropy, forward and backward, over the last axis.
//!
//! Both subtract the row max before exponentiating (so exp never overflows) and are
//! row-parallel on large tensors. Labels are validated before any parallel work starts, so a bad
//! label is a clean `Error::Batch` rather than a panic inside a worker.

use super::math;
use super::simd::simd_fn;
use super::util::{F32In, I32In, expect_shape, for_rows, for_rows_weighted, numel};
use crate::error::{Error, Result};

simd_fn! {
    /// `scale` * softmax of one row into `out` (the scale folds cross-entropy's dloss in).
    fn softmax_row(x: &[f32], scale: f32, out: &mut [f32]) {
        let m = math::max(x);
        for (o, &v) in out.iter_mut().zip(x) {
            *o = math::exp(v - m);
        }
        let inv = scale / math::sum(out);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

simd_fn! {
    /// One row of softmax's backward: dx = y * (dy - dot(y, dy)).
    fn softmax_backward_row(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let s = math::dot(y, dy);
        for ((o, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
            *o = yv * (g - s);
        }
    }
}

/// y [..., C] = softmax(x) over the last axis.
pub(super) fn softmax_forward(x: F32In, y: &mut [f32], y_shape: &[usize]) -> Result<()> {
    expect_shape("softmax", "output", y_shape, x.shape)?;
    let c = x.shape.last().copied().unwrap_or(1);
    for_rows(y, c, |r, out| softmax_row(&x.data[r * c..][..c], 1.0, out));
    Ok(())
}

/// (y, dy) -> dx = y * (dy - sum(dy * y)) per row, y being softmax's output.
pub(super) fn softmax_backward(
    y: F32In,
    dy: F32In,
    dx: &mut [f32],
    dx_shape: &[usize],
) -> Result<()> {
    expect_shape("softmax_backward", "dy", dy.shape, y.shape)?;
    expect_shape("softmax_backward", "output", dx_shape, y.shape)?;
    let c = y.shape.last().copied().unwrap_or(1);
    for_rows(dx, c, |r, out| {
        softmax_backward_row(&y.data[r * c..][..c], &dy.data[r * c..][..c], out);
    });
    Ok(())
}

/// Checks (logits [..., V], labels [...]) and returns V; every label must lie in [0, V).
fn check_labels(op: &str, logits: F32In, labels: I32In) -> Result<usize> {
    let Some((&v, rows)) = logits.shape.split_last() else {
        return Err(Error::shape(op, "logits must have rank >= 1"));
    };
    if numel(rows) != labels.data.len() {
        return Err(Error::shape(
            op,
            format!(
                "labels {:?} do not match the rows of logits {:?}",
                labels.shape, logits.shape
            ),
        ));
    }
    if let Some((i, &l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| l < 0 || l as usize >= v)
    {
        return Err(Error::batch(format!(
            "{op}: label {l} at position {i} is outside the vocabulary [0, {v})"
        )));
    }
    Ok(v)
}

simd_fn! {
    /// The row's logsumexp, log(sum(exp(row - max))) + max; `scratch` holds the exps so that
    /// exp and sum are two simple loops LLVM vectorises (a fused exp-and-accumulate is not).
    fn logsumexp(row: &[f32], scratch: &mut [f32]) -> f32 {
        let m = math::max(row);
        if m == f32::INFINITY {
            return m;
        }
        for (e, &v) in scratch.iter_mut().zip(row) {
            *e = math::exp(v - m);
        }
        math::sum(&scratch[..row.len()]).ln() + m
    }
}

/// (logits [N, V], labels i32 [N]) -> loss [N] = logsumexp(row) - row[label].
pub(super) fn cross_entropy_forward(logits: F32In, labels: I32In, loss: &mut [f32]) -> Result<()> {
    let v = check_labels("cross_entropy", logits, labels)?;
    if loss.len() != labels.data.len() {
        return Err(Error::shape(
            "cross_entropy",
            "output must have one loss per row",
        ));
    }
    // Each loss element reads a whole logits row: weight the parallel threshold by V. Rows go
    // in groups so that one exp scratch row serves several.
    const GROUP: usize = 8;
    for_rows_weighted(loss, GROUP, v, |gi, out| {
        let mut scratch = vec![0.0f32; v];
        for (k, o) in out.iter_mut().enumerate() {
            let r = gi * GROUP + k;
            let row = &logits.data[r * v..][..v];
            *o = logsumexp(row, &mut scratch) - row[labels.data[r] as usize];
        }
    });
    Ok(())
}

/// (logits [N, V], labels [N], dloss [N]) -> dlogits [N, V] = (softmax(row) - onehot) * dloss.
pub(super) fn cross_entropy_backward(
    logits: F32In,
    labels: I32In,
    dloss: F32In,
    dx: &mut [f32],
    dx_shape: &[usize],
) -> Result<()> {
    let v = check_labels("cross_entropy_backward", logits, labels)?;
    expect_shape("cross_entropy_backward", "output", dx_shape, logits.shape)?;
    if dloss.data.len() != labels.data.len() {
        return Err(Error::shape(
            "cross_entropy_backward",
            format!(
                "dloss {:?} must have one element per row of logits {:?}",
                dloss.shape, logits.shape
            ),
        ));
    }
    for_rows(dx, v, |r, out| {
        let g = dloss.data[r];
        softmax_row(&logits.data[r * v..][..v], g, out);
        out[labels.data[r] as usize] -= g;
    });
    Ok(())
}
