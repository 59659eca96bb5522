//! 16-bit float tensors on the CPU: `cast`, and every other kernel run in f32 on widened copies
//! of its 16-bit inputs, its output rounded once at the end. So a 16-bit op computes exactly
//! what its f32 kernel computes on the rounded inputs (f32 accumulation everywhere), and the
//! memory a 16-bit activation takes between ops is halved.

use super::util::check_out_len;
use crate::error::{Error, Result};
use crate::exec::{HostData, KernelCtx, TensorRef, widened_refs};
use crate::ir::{DType, Op};
use crate::tensor::half::{narrow_into, widen};

/// y = x rounded to `out`'s float type.
pub(super) fn cast(
    inputs: &[TensorRef<'_, HostData>],
    out: &mut HostData,
    out_shape: &[usize],
) -> Result<()> {
    check_out_len("cast", out, out_shape)?;
    let x = widen(inputs[0].buf).ok_or_else(|| Error::DType {
        what: "cast input".into(),
        expected: "a float type".into(),
        got: inputs[0].buf.dtype().to_string(),
    })?;
    if x.len() != out.len() {
        return Err(Error::internal("cast: input and output lengths differ"));
    }
    narrow_into(&x, out);
    Ok(())
}

/// Run `kernel` (the f32 dispatch) on f32 copies of the 16-bit inputs and round its f32 result
/// into `out`.
pub(super) fn execute_widened(
    op: &Op,
    inputs: &[TensorRef<'_, HostData>],
    out: &mut HostData,
    out_shape: &[usize],
    ctx: &KernelCtx,
    kernel: impl Fn(&Op, &[TensorRef<'_, HostData>], &mut HostData, &[usize], &KernelCtx) -> Result<()>,
) -> Result<()> {
    let wide: Vec<Option<HostData>> = inputs
        .iter()
        .map(|t| match t.buf {
            HostData::BF16(_) | HostData::F16(_) => {
                widen(t.buf).map(|v| HostData::F32(v.into_owned()))
            }
            _ => None,
        })
        .collect();
    let refs = widened_refs(inputs, &wide);
    match out {
        HostData::BF16(_) | HostData::F16(_) => {
            let mut y = HostData::zeros(DType::F32, out.len());
            kernel(op, &refs, &mut y, out_shape, ctx)?;
            narrow_into(y.as_f32().expect("f32 scratch"), out);
            Ok(())
        }
        _ => kernel(op, &refs, out, out_shape, ctx),
    }
}
