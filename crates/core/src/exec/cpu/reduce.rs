//! Reductions over one axis (sum, mean, max) and max's backward.
//!
//! A tensor reduced over `axis` is viewed as [outer, len, inner]: `outer` the product of the
//! dimensions before the axis, `inner` after it. The output is [outer, inner].

use super::util::{F32In, expect_shape, numel};
use crate::error::{Error, Result};
use crate::ir::ReduceOp;

/// (outer, len, inner) of `shape` around `axis`.
fn split(op: &str, shape: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(Error::shape(
            op,
            format!("axis {axis} is out of range for shape {shape:?}"),
        ));
    }
    Ok((
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    ))
}

/// The shape of a reduction's result: the axis kept as 1 or dropped.
fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

/// out = reduce(x, axis). Sums accumulate in f64 (a loss mean runs over every row of a batch).
pub(super) fn reduce_forward(
    op: ReduceOp,
    x: F32In,
    axis: usize,
    keepdim: bool,
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<()> {
    let name = op.name();
    let (outer, len, inner) = split(name, x.shape, axis)?;
    expect_shape(
        name,
        "output",
        out_shape,
        &reduced_shape(x.shape, axis, keepdim),
    )?;
    if op == ReduceOp::Max && len == 0 && outer * inner > 0 {
        return Err(Error::shape(
            "max",
            format!("axis {axis} of {:?} is empty", x.shape),
        ));
    }
    if op == ReduceOp::Max {
        max_forward(x.data, (outer, len, inner), out);
        return Ok(());
    }
    // Mean of an empty axis is NaN, as in PyTorch (0/0).
    let div = if op == ReduceOp::Mean {
        len as f64
    } else {
        1.0
    };
    if inner == 1 {
        for (o, dst) in out.iter_mut().enumerate() {
            let row = &x.data[o * len..][..len];
            *dst = (row.iter().map(|&v| v as f64).sum::<f64>() / div) as f32;
        }
        return Ok(());
    }
    let mut acc = vec![0.0f64; inner];
    for o in 0..outer {
        acc.fill(0.0);
        for l in 0..len {
            let row = &x.data[(o * len + l) * inner..][..inner];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
        for (dst, &a) in out[o * inner..][..inner].iter_mut().zip(&acc) {
            *dst = (a / div) as f32;
        }
    }
    Ok(())
}

/// out[o, i] = max over l of x[o, l, i]; a NaN anywhere in the slice wins, as in PyTorch.
fn max_forward(x: &[f32], (outer, len, inner): (usize, usize, usize), out: &mut [f32]) {
    for o in 0..outer {
        let dst = &mut out[o * inner..][..inner];
        dst.copy_from_slice(&x[o * len * inner..][..inner]);
        for l in 1..len {
            let row = &x[(o * len + l) * inner..][..inner];
            for (m, &v) in dst.iter_mut().zip(row) {
                // An earlier NaN stays; a new NaN is adopted.
                if !m.is_nan() && (v > *m || v.is_nan()) {
                    *m = v;
                }
            }
        }
    }
}

/// Index along the axis of the first maximum of x[o, :, i] (the first NaN if there is one).
fn first_argmax(x: &[f32], o: usize, i: usize, len: usize, inner: usize) -> usize {
    let at = |l: usize| x[(o * len + l) * inner + i];
    let (mut best, mut bv) = (0, at(0));
    for l in 1..len {
        if bv.is_nan() {
            break;
        }
        let v = at(l);
        if v > bv || v.is_nan() {
            best = l;
            bv = v;
        }
    }
    best
}

/// (x, dy) -> dx: dy routed to the first arg-max along `axis`, zero elsewhere.
pub(super) fn max_backward(
    x: F32In,
    dy: F32In,
    axis: usize,
    keepdim: bool,
    dx: &mut [f32],
    dx_shape: &[usize],
) -> Result<()> {
    let (outer, len, inner) = split("max_backward", x.shape, axis)?;
    expect_shape("max_backward", "output", dx_shape, x.shape)?;
    expect_shape(
        "max_backward",
        "dy",
        dy.shape,
        &reduced_shape(x.shape, axis, keepdim),
    )?;
    dx.fill(0.0);
    if len == 0 {
        return Ok(());
    }
    for o in 0..outer {
        for i in 0..inner {
            let l = first_argmax(x.data, o, i, len, inner);
            dx[(o * len + l) * inner + i] = dy.data[o * inner + i];
        }
    }
    Ok(())
}
