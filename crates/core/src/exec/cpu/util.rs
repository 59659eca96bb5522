//! Argument plumbing shared by the kernels: typed views of the inputs with their dtype and length
//! checked once, the output view, broadcast strides, the strided row walker and the row-parallel
//! loop. Kept apart from the kernels so that each kernel file reads as the math it implements.

use crate::error::{Error, Result};
use crate::exec::{HostData, TensorRef};
use crate::ir::DType;
use rayon::prelude::*;

/// Tensors smaller than this run on the calling thread: below it rayon's fork/join costs more
/// than the parallel work saves.
pub(super) const PAR_MIN_ELEMS: usize = 32 * 1024;

/// Each parallel task gets at least this many elements, so tasks stay worth their scheduling.
const PAR_TASK_ELEMS: usize = 4 * 1024;

pub(super) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// An f32 input tensor: data and shape, the length already checked against the shape.
#[derive(Clone, Copy)]
pub(super) struct F32In<'a> {
    pub data: &'a [f32],
    pub shape: &'a [usize],
}

/// An i32 input tensor (indices, labels).
#[derive(Clone, Copy)]
pub(super) struct I32In<'a> {
    pub data: &'a [i32],
    pub shape: &'a [usize],
}

fn dtype_error(op: &str, what: &str, expected: DType, got: DType) -> Error {
    Error::DType {
        what: format!("{op} {what}"),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// The buffer's own variant is the truth; a `TensorRef.dtype` that disagrees is an executor bug.
fn checked_ref<'a>(op: &str, t: &TensorRef<'a, HostData>, i: usize) -> Result<&'a HostData> {
    if t.buf.dtype() != t.dtype {
        return Err(Error::internal(format!(
            "{op}: input {i} is declared {} but its buffer holds {}",
            t.dtype,
            t.buf.dtype()
        )));
    }
    if t.buf.len() != numel(t.shape) {
        return Err(Error::shape(
            op,
            format!(
                "input {i} has {} elements but shape {:?}",
                t.buf.len(),
                t.shape
            ),
        ));
    }
    Ok(t.buf)
}

/// Input `i` as f32, or `Error::DType` naming the op.
pub(super) fn f32_in<'a>(
    op: &str,
    inputs: &[TensorRef<'a, HostData>],
    i: usize,
) -> Result<F32In<'a>> {
    let t = inputs
        .get(i)
        .ok_or_else(|| Error::shape(op, format!("missing input {i}")))?;
    match checked_ref(op, t, i)? {
        HostData::F32(v) => Ok(F32In {
            data: v,
            shape: t.shape,
        }),
        other => Err(dtype_error(
            op,
            &format!("input {i}"),
            DType::F32,
            other.dtype(),
        )),
    }
}

/// Input `i` as i32, or `Error::DType` naming the op.
pub(super) fn i32_in<'a>(
    op: &str,
    inputs: &[TensorRef<'a, HostData>],
    i: usize,
) -> Result<I32In<'a>> {
    let t = inputs
        .get(i)
        .ok_or_else(|| Error::shape(op, format!("missing input {i}")))?;
    match checked_ref(op, t, i)? {
        HostData::I32(v) => Ok(I32In {
            data: v,
            shape: t.shape,
        }),
        other => Err(dtype_error(
            op,
            &format!("input {i}"),
            DType::I32,
            other.dtype(),
        )),
    }
}

/// Input `i` of either dtype (for the dtype-generic shape ops).
pub(super) fn any_in<'a>(
    op: &str,
    inputs: &[TensorRef<'a, HostData>],
    i: usize,
) -> Result<&'a HostData> {
    let t = inputs
        .get(i)
        .ok_or_else(|| Error::shape(op, format!("missing input {i}")))?;
    checked_ref(op, t, i)
}

/// The output as f32, its length checked against `out_shape`.
pub(super) fn f32_out<'o>(
    op: &str,
    out: &'o mut HostData,
    out_shape: &[usize],
) -> Result<&'o mut [f32]> {
    check_out_len(op, out, out_shape)?;
    match out {
        HostData::F32(v) => Ok(v),
        other => Err(dtype_error(op, "output", DType::F32, other.dtype())),
    }
}

pub(super) fn check_out_len(op: &str, out: &HostData, out_shape: &[usize]) -> Result<()> {
    if out.len() != numel(out_shape) {
        return Err(Error::internal(format!(
            "{op}: output buffer has {} elements but shape {out_shape:?}",
            out.len()
        )));
    }
    Ok(())
}

/// `Error::shape` unless `got == want`.
pub(super) fn expect_shape(op: &str, what: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("{what} has shape {got:?}, expected {want:?}"),
        ));
    }
    Ok(())
}

/// Numpy broadcast of two concrete shapes.
pub(super) fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(Error::shape(
                op,
                format!("shapes {a:?} and {b:?} do not broadcast (dimension {i}: {x} vs {y})"),
            )),
        })
        .collect()
}

/// Strides of `src` read as if broadcast (numpy rules) to `dst`: 0 along broadcast dimensions.
/// `None` when `src` does not broadcast to `dst`.
pub(super) fn broadcast_strides(src: &[usize], dst: &[usize]) -> Option<Vec<usize>> {
    if src.len() > dst.len() {
        return None;
    }
    let lead = dst.len() - src.len();
    let own = crate::ir::strides(src);
    let mut s = vec![0; dst.len()];
    for (i, &d) in dst.iter().enumerate().skip(lead) {
        let sd = src[i - lead];
        if sd == d {
            s[i] = own[i - lead];
        } else if sd != 1 {
            return None;
        }
    }
    Some(s)
}

/// Walks every row (all indices but the last) of a tensor of shape `dims`, calling
/// `f(row, offsets)` where `offsets[k]` is the row's start in source `k` under `strides[k]`.
/// The caller runs the innermost dimension itself, so the per-element loop stays tight.
/// A rank-0 or rank-1 tensor is one row.
pub(super) fn for_each_row<const K: usize>(
    dims: &[usize],
    strides: [&[usize]; K],
    mut f: impl FnMut(usize, [usize; K]),
) {
    if dims.contains(&0) {
        return;
    }
    let r = dims.len();
    if r <= 1 {
        f(0, [0; K]);
        return;
    }
    let outer = &dims[..r - 1];
    let rows = numel(outer);
    let mut idx = vec![0usize; r - 1];
    let mut off = [0usize; K];
    for row in 0..rows {
        f(row, off);
        // Odometer increment, carrying offsets along instead of recomputing them per row.
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            for k in 0..K {
                off[k] += strides[k][d];
            }
            if idx[d] < outer[d] {
                break;
            }
            for k in 0..K {
                off[k] -= strides[k][d] * outer[d];
            }
            idx[d] = 0;
        }
    }
}

/// Runs `f(row, out_row)` over consecutive `row_len`-long rows of `out` (the last one may be
/// shorter), in parallel when the tensor is large enough to amortise rayon's overhead.
pub(super) fn for_rows<T: Send>(out: &mut [T], row_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    for_rows_weighted(out, row_len, 1, f);
}

/// `for_rows` for kernels that read `weight` input elements per output element (a loss row
/// reads a whole logits row), so the parallel threshold counts the work, not the output.
pub(super) fn for_rows_weighted<T: Send>(
    out: &mut [T],
    row_len: usize,
    weight: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if row_len == 0 || out.is_empty() {
        return;
    }
    let work = out.len().saturating_mul(weight.max(1));
    if work >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1 {
        let min_rows = PAR_TASK_ELEMS.div_ceil(row_len.saturating_mul(weight.max(1)));
        out.par_chunks_mut(row_len)
            .with_min_len(min_rows)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    } else {
        out.chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    }
}

/// Elementwise `f` over flat chunks of `out`: `f(start, chunk)` with `start` the chunk's offset.
pub(super) fn for_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    const CHUNK: usize = 4096;
    for_rows(out, CHUNK, |r, c| f(r * CHUNK, c));
}
