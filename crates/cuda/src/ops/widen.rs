//! 16-bit floats, with the CPU backend's semantics (weft_core's `cpu/widen.rs`): `cast` rounds
//! to nearest even. An op touching a bf16/f16 tensor runs natively when its kernel family is
//! instantiated for one float type (`native_half`) and all its float tensors share it;
//! otherwise its f32 kernels run on f32 copies of its 16-bit inputs, the f32 result rounded
//! once into the output (`execute_widened`).

use super::{Launch, dispatch, elems, launch, sfx};
use crate::buffer::CudaBuffer;
use weft_core::exec::{KernelCtx, TensorRef, widened_refs};
use weft_core::ir::Op;
use weft_core::{Error, Result};

impl Launch<'_> {
    /// out = x converted to out's float type (any float type to any).
    pub fn cast(&self, x: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
        if x.len() != out.len() {
            return Err(Error::internal("cast: input and output lengths differ"));
        }
        if x.is_empty() {
            return Ok(());
        }
        let entry = format!(
            "cast_{}_{}",
            sfx("cast", x.dtype())?,
            sfx("cast", out.dtype())?
        );
        let stream = &self.b.dev.streams.compute;
        let n = x.len() as i64;
        let (xp, _xg) = x.data().ptr(stream);
        let (yp, _yg) = out.data_mut().ptr_mut(stream);
        launch!(self, entry, elems(n as usize); &xp, &yp, &n)
    }

    /// out (f32) filled with `value`: the loss-scale leaf.
    pub fn fill(&self, out: &mut CudaBuffer, value: f32) -> Result<()> {
        let y = super::f32_out("loss_scale", out)?;
        if y.is_empty() {
            return Ok(());
        }
        let n = y.len() as i64;
        launch!(self, "fill_f32".to_string(), elems(y.len()); y, &value, &n)
    }

    /// Runs `op` in f32: 16-bit inputs widened into scratch buffers, a 16-bit output computed
    /// into an f32 scratch buffer and rounded into `out`.
    pub fn execute_widened(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, CudaBuffer>],
        out: &mut CudaBuffer,
        out_shape: &[usize],
        ctx: &KernelCtx,
    ) -> Result<()> {
        let mut wide: Vec<Option<CudaBuffer>> = Vec::with_capacity(inputs.len());
        for t in inputs {
            wide.push(if t.dtype.is_half() {
                let mut w = self.b.scratch(t.buf.len())?;
                self.cast(t.buf, &mut w)?;
                Some(w)
            } else {
                None
            });
        }
        let refs = widened_refs(inputs, &wide);
        if !out.dtype().is_half() {
            return dispatch(self, op, &refs, out, out_shape, ctx);
        }
        let mut y = self.b.scratch(out.len())?;
        dispatch(self, op, &refs, &mut y, out_shape, ctx)?;
        self.cast(&y, out)
    }
}
