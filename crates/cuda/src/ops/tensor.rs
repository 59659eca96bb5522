//! Fill, elementwise families, sum_to, reductions, and the backend's in-place helpers.

use super::{Dims, Fl, FlMut, Launch, elems, fl, fl_out, launch, numel, sfx};
use crate::buffer::CudaBuffer;
use crate::device::driver;
use crate::kernels::codes::{binary_code, reduce_code, unary_code};
use cudarc::driver::CudaSlice;
use weft_core::exec::TensorRef;
use weft_core::ir::{Op, ReduceOp};
use weft_core::{Error, Result};

/// Strides reading `shape` (right-aligned) at each of `out`'s dims: 0 where broadcast.
pub(super) fn broadcast_strides(op: &str, shape: &[usize], out: &[usize]) -> Result<Dims> {
    let mut s = [0i64; 8];
    let mut stride = 1i64;
    let lead = out
        .len()
        .checked_sub(shape.len())
        .ok_or_else(|| Error::shape(op, format!("cannot broadcast {shape:?} to {out:?}")))?;
    for (d, &n) in shape.iter().enumerate().rev() {
        let o = out[lead + d];
        if n != 1 && n != o {
            return Err(Error::shape(
                op,
                format!("cannot broadcast {shape:?} to {out:?}"),
            ));
        }
        s[lead + d] = if n == 1 { 0 } else { stride };
        stride *= n as i64;
    }
    Ok(Dims(s))
}

/// sum_to's kernel arguments: the input dims, the output's dims right-aligned to the input's
/// rank (1 on the leading reduced dims), and how many inputs each output sums.
pub(super) fn sum_to_dims(
    name: &str,
    in_shape: &[usize],
    out_shape: &[usize],
) -> Result<(Dims, Dims, i64)> {
    let mut aligned = vec![1usize; in_shape.len() - out_shape.len()];
    aligned.extend_from_slice(out_shape);
    let per = numel(in_shape) / numel(out_shape).max(1);
    Ok((
        Dims::of(name, in_shape)?,
        Dims::of(name, &aligned)?,
        per as i64,
    ))
}

/// [outer, len, inner] of `shape` around `axis`.
pub(super) fn split(shape: &[usize], axis: usize) -> (i64, i64, i64) {
    let outer = numel(&shape[..axis]) as i64;
    let inner = numel(&shape[axis + 1..]) as i64;
    (outer, shape[axis] as i64, inner)
}

impl Launch<'_> {
    pub(super) fn tensor(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, CudaBuffer>],
        out: &mut CudaBuffer,
        shape: &[usize],
    ) -> Result<()> {
        let name = op.name();
        let s = sfx(name, out.dtype())?;
        let y = &mut fl_out(name, out)?;
        let n = y.len() as i64;
        let xs = inputs
            .iter()
            .map(|t| fl(name, t))
            .collect::<Result<Vec<_>>>()?;
        let x = |i: usize| &xs[i];
        if n == 0 {
            return Ok(());
        }
        let cfg = elems(y.len());
        match *op {
            Op::Fill { value, .. } => launch!(self, format!("fill_{s}"), cfg; y, &value, &n),
            Op::Unary(u) => {
                let c = unary_code(u);
                launch!(self, format!("unary_forward_{s}"), cfg; &c, x(0), y, &n)
            }
            Op::UnaryBackward(u) => {
                let c = unary_code(u);
                launch!(self, format!("unary_backward_{s}"), cfg; &c, x(0), x(1), y, &n)
            }
            Op::Binary(b) => {
                let c = binary_code(b);
                let sa = broadcast_strides(name, inputs[0].shape, shape)?;
                let sb = broadcast_strides(name, inputs[1].shape, shape)?;
                let (dims, rank) = (Dims::of(name, shape)?, shape.len() as i32);
                launch!(self, format!("binary_forward_{s}"), cfg;
                    &c, x(0), &sa, x(1), &sb, y, &dims, &rank, &n)
            }
            Op::Scale { factor } => {
                launch!(self, format!("scale_{s}"), cfg; x(0), y, &factor, &n)
            }
            Op::SumTo { .. } => self.sum_to(name, s, x(0), inputs[0].shape, y, shape),
            Op::Reduce { .. } | Op::MaxBackward { .. } => {
                self.reduce(op, s, &xs, inputs[0].shape, y)
            }
            _ => Err(Error::internal(format!("{name}: not a tensor op"))),
        }
    }

    /// Reduce over one axis (sum, mean, max) and max's backward.
    fn reduce(&self, op: &Op, s: &str, xs: &[Fl], shape: &[usize], y: &mut FlMut) -> Result<()> {
        let (Op::Reduce { axis, .. } | Op::MaxBackward { axis, .. }) = *op else {
            return Err(Error::internal(format!("{}: not a reduction", op.name())));
        };
        let (outer, len, inner) = split(shape, axis);
        match *op {
            Op::Reduce { op: r, .. } => {
                if r == ReduceOp::Max && len == 0 {
                    return Err(Error::shape(
                        "max",
                        format!("axis {axis} of {shape:?} is empty"),
                    ));
                }
                let c = reduce_code(r);
                launch!(self, format!("reduce_forward_{s}"), elems(y.len());
                    &c, &xs[0], y, &outer, &len, &inner)
            }
            _ if len == 0 || outer * inner == 0 => Ok(()),
            _ => {
                let cfg = elems((outer * inner) as usize);
                launch!(self, format!("max_backward_{s}"), cfg;
                    &xs[0], &xs[1], y, &outer, &len, &inner)
            }
        }
    }

    fn sum_to(
        &self,
        name: &str,
        s: &str,
        x: &Fl,
        in_shape: &[usize],
        y: &mut FlMut,
        out_shape: &[usize],
    ) -> Result<()> {
        let (in_dims, out_dims, per) = sum_to_dims(name, in_shape, out_shape)?;
        let rank = in_shape.len() as i32;
        let n_out = y.len() as i64;
        launch!(self, format!("sum_to_{s}"), elems(y.len());
            x, &in_dims, y, &out_dims, &rank, &n_out, &per)
    }

    /// Sums of squares in f64 of several buffers with one read-back: each buffer's per-block
    /// partials go to its own range of one scratch; each range is added on the host in block
    /// order, then the buffers in order (one buffer: its own sum).
    pub fn sum_squares_all(&self, xs: &[&CudaSlice<f32>]) -> Result<f64> {
        let mut ranges = Vec::with_capacity(xs.len());
        let mut total = 0;
        for x in xs {
            let blocks = if x.is_empty() {
                0
            } else {
                elems(x.len().min(1 << 20)).grid_dim.0 as usize
            };
            ranges.push(total..total + blocks);
            total += blocks;
        }
        if total == 0 {
            return Ok(0.0);
        }
        let stream = &self.b.dev.streams.compute;
        let mut partial = stream
            .alloc_zeros::<f64>(total)
            .map_err(|e| driver("sum_squares scratch", e))?;
        for (x, r) in xs.iter().zip(&ranges) {
            if r.is_empty() {
                continue;
            }
            let cfg = elems(x.len().min(1 << 20));
            let n = x.len() as i64;
            let mut part = partial.slice_mut(r.clone());
            launch!(self, "sum_squares_f32".to_string(), cfg; *x, &mut part, &n)?;
        }
        let host = stream
            .clone_dtoh(&partial)
            .map_err(|e| driver("sum_squares download", e))?;
        stream.synchronize().map_err(|e| driver("sum_squares", e))?;
        Ok(ranges
            .into_iter()
            .fold(0.0, |s, r| s + host[r].iter().sum::<f64>()))
    }

    pub fn scale_inplace(&self, x: &mut CudaSlice<f32>, factor: f32) -> Result<()> {
        if x.is_empty() {
            return Ok(());
        }
        let n = x.len() as i64;
        launch!(self, "scale_inplace_f32".to_string(), elems(x.len()); x, &factor, &n)
    }

    pub fn add_inplace(&self, d: &mut CudaSlice<f32>, s: &CudaSlice<f32>) -> Result<()> {
        if d.is_empty() {
            return Ok(());
        }
        let n = d.len() as i64;
        launch!(self, "add_inplace_f32".to_string(), elems(d.len()); d, s, &n)
    }
}
