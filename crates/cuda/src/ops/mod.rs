//! Op launches: one function per op family, on the compute stream.
//!
//! Table of contents:
//! - this file  validation (`check`: the core's own shape inference, so kernels may trust their
//!   index arithmetic), dispatch, launch plumbing
//! - `tensor`   fill, elementwise, sum_to, reductions, in-place helpers, sum of squares
//! - `matmul`   batched matmul through cuBLAS (row-major via the transposed column-major call)
//! - `shape`    reshape, permute, slice (+ backward), concat, expand: one strided copy kernel
//! - `nn`       softmax, cross-entropy, layer norm, embedding, attention, dropout
//! - `optim`    fused SGD and Adam/AdamW updates
//! - `widen`    16-bit floats: cast, and every other op run in f32 on widened inputs
//! - `tests`    the host-side index plans (copies, broadcasts, cuBLAS arguments) checked without
//!   a GPU, by running the kernels' index arithmetic on the CPU against the CPU backend
//! - `attention_tests`  the attention kernels' blocks, tiles and loops, transcribed the same way

#[cfg(test)]
mod attention_tests;
mod matmul;
mod nn;
mod optim;
mod shape;
mod tensor;
#[cfg(test)]
mod tests;
mod widen;

use crate::backend::CudaBackend;
use crate::buffer::{CudaBuffer, Data};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg};
use weft_core::exec::{KernelCtx, TensorRef};
use weft_core::ir::{DType, Op, Shape, TensorType, infer};
use weft_core::{Error, Result};

/// Launches kernels for one backend.
pub struct Launch<'a> {
    pub b: &'a CudaBackend,
}

/// Launches kernel `$entry` on the compute stream with the listed arguments (references).
macro_rules! launch {
    ($l:expr, $entry:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let entry: String = $entry;
        let cfg: cudarc::driver::LaunchConfig = $cfg;
        let f = $l.b.dev.function(&entry)?;
        use cudarc::driver::PushKernelArg as _;
        let mut builder = $l.b.dev.streams.compute.launch_builder(&f);
        $( builder.arg($arg); )*
        // SAFETY: every argument list mirrors the kernel's C signature in kernels/*.cu, and
        // `check` validated the buffers' lengths against the shapes the indices derive from.
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(|e| $crate::device::driver(&entry, e))
    }};
}
pub(crate) use launch;

/// Threads per block of the elementwise and row kernels.
const BLOCK: u32 = 256;

/// A grid-stride launch over `n` elements (n > 0).
fn elems(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
fn rows(r: usize) -> Result<LaunchConfig> {
    let r = u32::try_from(r).map_err(|_| Error::unsupported("CUDA row kernels", "> 2^32 rows"))?;
    Ok(LaunchConfig {
        grid_dim: (r, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Kernel-name suffix of a float dtype.
fn sfx(op: &str, dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::BF16 => Ok("bf16"),
        DType::F16 => Ok("f16"),
        DType::I32 => Err(dtype_err(op, "output", DType::F32, DType::I32)),
    }
}

/// Up to 8 dims by value, as the kernels' `Dims`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dims([i64; 8]);

// SAFETY: plain `repr(C)` array of i64, the layout of `struct Dims { i64 d[8]; }`.
unsafe impl DeviceRepr for Dims {}

impl Dims {
    fn of(op: &str, v: &[usize]) -> Result<Dims> {
        if v.len() > 8 {
            return Err(Error::unsupported(
                format!("{op} on CUDA"),
                format!("rank {} (at most 8)", v.len()),
            ));
        }
        let mut d = [1i64; 8];
        for (o, &x) in d.iter_mut().zip(v) {
            *o = x as i64;
        }
        Ok(Dims(d))
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

pub(crate) fn f32s<'a>(op: &str, t: &TensorRef<'a, CudaBuffer>) -> Result<&'a CudaSlice<f32>> {
    match t.buf.data() {
        Data::F32(s) => Ok(s),
        d => Err(dtype_err(op, "input", DType::F32, d.dtype())),
    }
}

pub(crate) fn i32s<'a>(op: &str, t: &TensorRef<'a, CudaBuffer>) -> Result<&'a CudaSlice<i32>> {
    match t.buf.data() {
        Data::I32(s) => Ok(s),
        d => Err(dtype_err(op, "input", DType::I32, d.dtype())),
    }
}

pub(crate) fn f32_out<'a>(op: &str, out: &'a mut CudaBuffer) -> Result<&'a mut CudaSlice<f32>> {
    match out.data_mut() {
        Data::F32(s) => Ok(s),
        d => Err(dtype_err(op, "output", DType::F32, d.dtype())),
    }
}

/// A float tensor of any float type, as a kernel argument: the kernel's entry point (by dtype
/// suffix) decides how the bits are read.
pub(crate) enum Fl<'a> {
    F32(&'a CudaSlice<f32>),
    /// bf16 or f16 bits.
    U16(&'a CudaSlice<u16>),
}

/// Mutable form of `Fl`, for outputs.
pub(crate) enum FlMut<'a> {
    F32(&'a mut CudaSlice<f32>),
    U16(&'a mut CudaSlice<u16>),
}

impl FlMut<'_> {
    pub fn len(&self) -> usize {
        match self {
            FlMut::F32(s) => s.len(),
            FlMut::U16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: delegates to cudarc's own impls for `&CudaSlice<T>`, which push the device pointer
// and record the stream use.
unsafe impl<'a, 'b: 'a, 'c: 'b> PushKernelArg<&'b Fl<'c>> for LaunchArgs<'a> {
    fn arg(&mut self, arg: &'b Fl<'c>) -> &mut Self {
        match arg {
            Fl::F32(s) => self.arg(*s),
            Fl::U16(s) => self.arg(*s),
        }
    }
}

// SAFETY: as above, through cudarc's `&mut CudaSlice<T>` impls.
unsafe impl<'a, 'b: 'a, 'c: 'b> PushKernelArg<&'b mut FlMut<'c>> for LaunchArgs<'a> {
    fn arg(&mut self, arg: &'b mut FlMut<'c>) -> &mut Self {
        match arg {
            FlMut::F32(s) => self.arg(&mut **s),
            FlMut::U16(s) => self.arg(&mut **s),
        }
    }
}

/// Input `i` as a float tensor of any float type.
pub(crate) fn fl<'a>(op: &str, t: &TensorRef<'a, CudaBuffer>) -> Result<Fl<'a>> {
    match t.buf.data() {
        Data::F32(s) => Ok(Fl::F32(s)),
        Data::BF16(s) | Data::F16(s) => Ok(Fl::U16(s)),
        Data::I32(_) => Err(dtype_err(op, "input", DType::F32, DType::I32)),
    }
}

/// The output as a float tensor of any float type.
pub(crate) fn fl_out<'a>(op: &str, out: &'a mut CudaBuffer) -> Result<FlMut<'a>> {
    match out.data_mut() {
        Data::F32(s) => Ok(FlMut::F32(s)),
        Data::BF16(s) | Data::F16(s) => Ok(FlMut::U16(s)),
        Data::I32(_) => Err(dtype_err(op, "output", DType::F32, DType::I32)),
    }
}

/// Whether every float tensor of a launch has one dtype, so its kernel instantiation for that
/// dtype runs it natively (no widened copies).
pub fn uniform_float(inputs: &[TensorRef<'_, CudaBuffer>], out: &CudaBuffer) -> bool {
    let d = out.dtype();
    d.is_float() && inputs.iter().all(|t| !t.dtype.is_float() || t.dtype == d)
}

/// Ops whose kernels take one float type for all their float tensors (instantiated for f32,
/// bf16 and f16); the rest read or write f32 only and take 16-bit tensors widened.
pub fn native_half(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::UnaryBackward(_)
            | Op::Binary(_)
            | Op::Scale { .. }
            | Op::SumTo { .. }
            | Op::SoftmaxBackward
            | Op::LayerNorm { .. }
            | Op::LayerNormBackward { .. }
            | Op::MatMul { .. }
            | Op::CausalAttention { .. }
            | Op::CausalAttentionBackward { .. }
            | Op::Dropout { .. }
            | Op::DropoutBackward { .. }
    )
}

fn dtype_err(op: &str, what: &str, expected: DType, got: DType) -> Error {
    Error::DType {
        what: format!("{op} {what}"),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// The op with its declared (possibly batch-symbolic) shape replaced by the concrete output
/// shape, so inference checks the launch that is actually about to run.
fn concretize(op: &Op, out_shape: &[usize]) -> Op {
    let fixed = Shape::fixed(out_shape);
    match op {
        Op::Reshape { .. } => Op::Reshape { shape: fixed },
        Op::Expand { .. } => Op::Expand { shape: fixed },
        Op::SumTo { .. } => Op::SumTo { shape: fixed },
        Op::Fill { value, .. } => Op::Fill {
            value: *value,
            shape: fixed,
        },
        // A scalar ([]) leaf; an executor may hand it any one-element shape.
        Op::LossScale => Op::Fill {
            value: 0.0,
            shape: fixed,
        },
        other => other.clone(),
    }
}

/// Validates a launch with the core's shape inference: input buffers match their shapes, and
/// the output buffer has the inferred dtype and shape. After this, no kernel can index outside
/// its buffers.
pub fn check(
    op: &Op,
    inputs: &[TensorRef<'_, CudaBuffer>],
    out: &CudaBuffer,
    out_shape: &[usize],
) -> Result<()> {
    let name = op.name();
    if matches!(op, Op::Input { .. } | Op::Parameter { .. }) {
        // LossScale is a leaf too, but one the backend fills (with the context's scale).
        return Err(Error::internal(format!(
            "{name}: leaves are fed by the executor, not executed"
        )));
    }
    for (i, t) in inputs.iter().enumerate() {
        if t.buf.len() != numel(t.shape) || t.buf.dtype() != t.dtype {
            return Err(Error::shape(
                name,
                format!(
                    "input {i}: a {} x {} buffer for a {} tensor of shape {:?}",
                    t.buf.dtype(),
                    t.buf.len(),
                    t.dtype,
                    t.shape
                ),
            ));
        }
    }
    if out.len() != numel(out_shape) {
        return Err(Error::shape(
            name,
            format!(
                "output buffer has {} elements, shape {out_shape:?} needs {}",
                out.len(),
                numel(out_shape)
            ),
        ));
    }
    let ins: Vec<TensorType> = inputs
        .iter()
        .map(|t| TensorType {
            shape: Shape::fixed(t.shape),
            dtype: t.dtype,
        })
        .collect();
    let ty = infer(&concretize(op, out_shape), &ins)?;
    if ty.dtype != out.dtype() {
        return Err(dtype_err(name, "output", ty.dtype, out.dtype()));
    }
    if ty.shape.to_vec() != out_shape {
        return Err(Error::shape(
            name,
            format!("output shape {out_shape:?} does not match {}", ty.shape),
        ));
    }
    Ok(())
}

/// Runs the kernel(s) for `op` (already `check`ed).
pub fn dispatch(
    l: &Launch,
    op: &Op,
    inputs: &[TensorRef<'_, CudaBuffer>],
    out: &mut CudaBuffer,
    out_shape: &[usize],
    ctx: &KernelCtx,
) -> Result<()> {
    match op {
        _ if op.moves_data() => l.move_data(op, inputs, out, out_shape),
        Op::Fill { .. }
        | Op::Unary(_)
        | Op::UnaryBackward(_)
        | Op::Binary(_)
        | Op::Scale { .. }
        | Op::SumTo { .. }
        | Op::Reduce { .. }
        | Op::MaxBackward { .. } => l.tensor(op, inputs, out, out_shape),
        Op::MatMul { trans_a, trans_b } => l.matmul(inputs, *trans_a, *trans_b, out, out_shape),
        _ => l.nn(op, inputs, out, out_shape, ctx),
    }
}
