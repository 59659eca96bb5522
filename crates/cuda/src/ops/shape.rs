//! Data movement for any dtype (by element width: f32/i32, bf16/f16): every op is one or more launches of
//! `strided_copy`, which walks the logical index space `dims` and reads x / writes y through
//! their own strides and offsets.

use super::tensor::broadcast_strides;
use super::{Dims, Launch, elems, launch, numel};
use crate::buffer::CudaBuffer;
use weft_core::exec::TensorRef;
use weft_core::ir::{Op, strides};
use weft_core::{Error, Result};

/// One strided copy: `dims` walked in row-major order.
pub(super) struct Copy {
    /// Which input is read.
    pub input: usize,
    pub x_off: i64,
    pub xs: Dims,
    pub y_off: i64,
    pub ys: Dims,
    pub dims: Vec<usize>,
}

fn strides_of(op: &str, shape: &[usize]) -> Result<Dims> {
    Dims::of(op, &strides(shape))
}

/// The copies that implement `op` (x shapes in `shapes`, output `out`).
pub(super) fn plan(op: &Op, shapes: &[&[usize]], out: &[usize]) -> Result<Vec<Copy>> {
    let name = op.name();
    let ys = strides_of(name, out)?;
    let out_strides = strides(out);
    let x = shapes[0];
    Ok(match *op {
        Op::Reshape { .. } => vec![Copy {
            input: 0,
            x_off: 0,
            xs: Dims::of(name, &[1])?,
            y_off: 0,
            ys: Dims::of(name, &[1])?,
            dims: vec![numel(out)],
        }],
        Op::Permute { ref perm } => {
            let xst = strides(x);
            let permuted: Vec<usize> = perm.iter().map(|&p| xst[p]).collect();
            vec![Copy {
                input: 0,
                x_off: 0,
                xs: Dims::of(name, &permuted)?,
                y_off: 0,
                ys,
                dims: out.to_vec(),
            }]
        }
        Op::Slice { axis, start, .. } => {
            let xst = strides(x);
            vec![Copy {
                input: 0,
                x_off: (start * xst[axis]) as i64,
                xs: Dims::of(name, &xst)?,
                y_off: 0,
                ys,
                dims: out.to_vec(),
            }]
        }
        Op::SliceBackward { axis, start, .. } => vec![Copy {
            input: 0,
            x_off: 0,
            xs: strides_of(name, x)?,
            y_off: (start * out_strides[axis]) as i64,
            ys,
            dims: x.to_vec(),
        }],
        Op::Concat { axis } => concat(name, shapes, axis, ys, &out_strides)?,
        Op::Expand { .. } => vec![Copy {
            input: 0,
            x_off: 0,
            xs: broadcast_strides(name, x, out)?,
            y_off: 0,
            ys,
            dims: out.to_vec(),
        }],
        _ => return Err(Error::internal(format!("{name}: not a data-movement op"))),
    })
}

/// One copy per part, each placed at its running offset along `axis`.
fn concat(
    name: &str,
    shapes: &[&[usize]],
    axis: usize,
    ys: Dims,
    out_strides: &[usize],
) -> Result<Vec<Copy>> {
    let mut at = 0;
    let mut copies = Vec::with_capacity(shapes.len());
    for (i, s) in shapes.iter().enumerate() {
        copies.push(Copy {
            input: i,
            x_off: 0,
            xs: strides_of(name, s)?,
            y_off: (at * out_strides[axis]) as i64,
            ys,
            dims: s.to_vec(),
        });
        at += s[axis];
    }
    Ok(copies)
}

impl Launch<'_> {
    pub(super) fn move_data(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, CudaBuffer>],
        out: &mut CudaBuffer,
        out_shape: &[usize],
    ) -> Result<()> {
        let name = op.name();
        if matches!(op, Op::SliceBackward { .. }) {
            self.zero(out)?;
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape).collect();
        let stream = &self.b.dev.streams.compute;
        for copy in plan(op, &shapes, out_shape)? {
            let input = &inputs[copy.input];
            let n = numel(&copy.dims);
            if n == 0 {
                continue;
            }
            let (dims, rank, n64) = (
                Dims::of(name, &copy.dims)?,
                copy.dims.len() as i32,
                n as i64,
            );
            // Both buffers as raw device pointers: the kernel moves 4- or 2-byte words whatever
            // the dtype (`check` made the dtypes agree).
            let width = if out.dtype().size_bytes() == 2 {
                "b16"
            } else {
                "b32"
            };
            let (x_ptr, _xr) = input.buf.data().ptr(stream);
            let (y_ptr, _yr) = out.data_mut().ptr_mut(stream);
            launch!(self, format!("strided_copy_{width}"), elems(n);
                &x_ptr, &copy.x_off, &copy.xs, &y_ptr, &copy.y_off, &copy.ys, &dims, &rank, &n64)?;
        }
        Ok(())
    }

    /// Zero-fills a buffer on the compute stream.
    pub(super) fn zero(&self, out: &mut CudaBuffer) -> Result<()> {
        out.data_mut().memset_zeros(&self.b.dev.streams.compute)
    }
}
