//! Shape kernels: reshape, permute, slice and its backward, concat. All are dtype-generic (an
//! i32 index tensor gets reshaped and sliced like any other) and pure data movement.
//!
//! Slices and concats view a tensor as [outer, len, inner] around the axis, so each moves
//! `outer` contiguous blocks with `copy_from_slice` (a memcpy) instead of per-element indexing.

use super::util::{expect_shape, for_each_row, numel};
use crate::error::{Error, Result};
use crate::ir::strides;

/// Reshape: same elements in the same order.
pub(super) fn reshape<T: Copy>(x: &[T], out: &mut [T]) -> Result<()> {
    if x.len() != out.len() {
        return Err(Error::shape(
            "reshape",
            format!("cannot reshape {} elements into {}", x.len(), out.len()),
        ));
    }
    out.copy_from_slice(x);
    Ok(())
}

/// out = x.permute(perm): output dim i is input dim perm[i].
pub(super) fn permute<T: Copy>(
    x: &[T],
    x_shape: &[usize],
    perm: &[usize],
    out: &mut [T],
    out_shape: &[usize],
) -> Result<()> {
    let r = x_shape.len();
    let mut seen = vec![false; r];
    for &p in perm {
        if p >= r || std::mem::replace(&mut seen[p], true) {
            return Err(Error::shape(
                "permute",
                format!("{perm:?} is not a permutation of the {r} axes of {x_shape:?}"),
            ));
        }
    }
    if perm.len() != r {
        return Err(Error::shape(
            "permute",
            format!(
                "{perm:?} has {} axes, input {x_shape:?} has {r}",
                perm.len()
            ),
        ));
    }
    let want: Vec<usize> = perm.iter().map(|&p| x_shape[p]).collect();
    expect_shape("permute", "output", out_shape, &want)?;
    let xs = strides(x_shape);
    // Input strides seen in output order: walking the output reads the input through them.
    let src: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let last = out_shape.last().copied().unwrap_or(1);
    let inner = src.last().copied().unwrap_or(1);
    for_each_row(out_shape, [&src], |row, [off]| {
        let o = &mut out[row * last..(row + 1) * last];
        if inner == 1 {
            o.copy_from_slice(&x[off..off + last]);
        } else {
            o.iter_mut()
                .enumerate()
                .for_each(|(j, o)| *o = x[off + j * inner]);
        }
    });
    Ok(())
}

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

fn with_axis(shape: &[usize], axis: usize, len: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = len;
    s
}

/// out = x[.., start..end, ..] along `axis`.
pub(super) fn slice<T: Copy>(
    x: &[T],
    x_shape: &[usize],
    (axis, start, end): (usize, usize, usize),
    out: &mut [T],
    out_shape: &[usize],
) -> Result<()> {
    let (outer, len, inner) = split("slice", x_shape, axis)?;
    if start > end || end > len {
        return Err(Error::shape(
            "slice",
            format!("range {start}..{end} is outside axis {axis} of {x_shape:?}"),
        ));
    }
    expect_shape(
        "slice",
        "output",
        out_shape,
        &with_axis(x_shape, axis, end - start),
    )?;
    let block = (end - start) * inner;
    for o in 0..outer {
        out[o * block..][..block].copy_from_slice(&x[(o * len + start) * inner..][..block]);
    }
    Ok(())
}

/// (dy) -> dx: dy placed at [start, start + dy's axis length) along `axis` of a zero tensor
/// whose axis has length `len`.
pub(super) fn slice_backward<T: Copy + Default>(
    dy: &[T],
    dy_shape: &[usize],
    (axis, start, len): (usize, usize, usize),
    dx: &mut [T],
    dx_shape: &[usize],
) -> Result<()> {
    let (outer, n, inner) = split("slice_backward", dy_shape, axis)?;
    if start + n > len {
        return Err(Error::shape(
            "slice_backward",
            format!("dy {dy_shape:?} at offset {start} does not fit axis {axis} of length {len}"),
        ));
    }
    expect_shape(
        "slice_backward",
        "output",
        dx_shape,
        &with_axis(dy_shape, axis, len),
    )?;
    dx.fill(T::default());
    let block = n * inner;
    for o in 0..outer {
        dx[(o * len + start) * inner..][..block].copy_from_slice(&dy[o * block..][..block]);
    }
    Ok(())
}

/// Concatenation of `xs` (data, shape) along `axis`.
pub(super) fn concat<T: Copy>(
    xs: &[(&[T], &[usize])],
    axis: usize,
    out: &mut [T],
    out_shape: &[usize],
) -> Result<()> {
    let Some(&(_, first)) = xs.first() else {
        return Err(Error::shape("concat", "needs at least one input"));
    };
    let mut total = 0;
    for (i, &(_, s)) in xs.iter().enumerate() {
        let same_rest = s.len() == first.len()
            && axis < s.len()
            && s.iter()
                .zip(first)
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        if !same_rest {
            return Err(Error::shape(
                "concat",
                format!("input {i} {s:?} does not match input 0 {first:?} off axis {axis}"),
            ));
        }
        total += s[axis];
    }
    expect_shape(
        "concat",
        "output",
        out_shape,
        &with_axis(first, axis, total),
    )?;
    let (outer, _, inner) = split("concat", first, axis)?;
    let out_block = total * inner;
    let mut at = 0;
    for &(data, s) in xs {
        let block = s[axis] * inner;
        for o in 0..outer {
            out[o * out_block + at..][..block].copy_from_slice(&data[o * block..][..block]);
        }
        at += block;
    }
    Ok(())
}
