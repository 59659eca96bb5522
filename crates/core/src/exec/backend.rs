//! The one device contract. The executor interprets a plan; everything that touches device
//! memory goes through this trait, so the CPU backend, the CUDA backend and a WASM build run the
//! same interpreter.

use crate::error::Result;
use crate::ir::{DType, Op};
use crate::tensor::{HostData, HostView};

/// Per-launch context a kernel may need besides its tensors.
#[derive(Debug, Clone, Copy)]
pub struct KernelCtx {
    /// Optimizer step being executed (dropout masks depend on it).
    pub step: u64,
    /// The loss scale backward is seeded with (`Op::LossScale`); 1 without mixed precision.
    pub loss_scale: f32,
}

impl Default for KernelCtx {
    fn default() -> Self {
        KernelCtx {
            step: 0,
            loss_scale: 1.0,
        }
    }
}

/// A read-only view of an input tensor: its buffer and concrete row-major shape.
pub struct TensorRef<'a, B> {
    pub buf: &'a B,
    pub shape: &'a [usize],
    pub dtype: DType,
}

/// Whether a launch reads or writes a 16-bit float tensor (`out`: its output's dtype).
pub fn touches_half<Buf>(inputs: &[TensorRef<'_, Buf>], out: DType) -> bool {
    out.is_half() || inputs.iter().any(|t| t.dtype.is_half())
}

/// `inputs` with each one that has a widened f32 copy in `wide` (same order) read from that
/// copy instead: how a backend runs an f32 kernel on 16-bit inputs.
pub fn widened_refs<'r, Buf>(
    inputs: &[TensorRef<'r, Buf>],
    wide: &'r [Option<Buf>],
) -> Vec<TensorRef<'r, Buf>> {
    inputs
        .iter()
        .zip(wide)
        .map(|(t, w)| TensorRef {
            buf: w.as_ref().unwrap_or(t.buf),
            shape: t.shape,
            dtype: if w.is_some() { DType::F32 } else { t.dtype },
        })
        .collect()
}

/// torch.optim.SGD hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Sgd {
    /// The gradient's weight in the momentum buffer, 1 - dampening (computed in f64, as torch
    /// does).
    pub fn damp(&self) -> f32 {
        (1.0 - self.dampening as f64) as f32
    }
}

/// torch.optim.Adam / AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the parameter (p *= 1 - lr*wd) instead of adding wd*p to the gradient.
    pub decoupled: bool,
}

/// One optimizer update rule applied to one parameter tensor (PyTorch semantics).
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateRule {
    /// state: [momentum buffer] (empty when momentum == 0).
    Sgd(Sgd),
    /// state: [exp_avg, exp_avg_sq].
    Adam(Adam),
}

impl UpdateRule {
    /// The checks every backend's `update` makes before touching memory: `range` lies in the
    /// parameter, `states` is the rule's count, and the gradient is the whole parameter's or
    /// (ZeRO's shards) just the range's. Returns the range of the gradient to read.
    pub fn grad_range(
        &self,
        param_len: usize,
        grad_len: usize,
        range: &std::ops::Range<usize>,
        states: usize,
    ) -> Result<std::ops::Range<usize>> {
        let mismatch = |what: &str, a: usize, b: usize| {
            crate::error::Error::internal(format!("{what}: buffers have {a} and {b} elements"))
        };
        if range.end > param_len || range.start > range.end {
            return Err(mismatch("update range", param_len, range.end));
        }
        let read = match grad_len {
            n if n == param_len => range.clone(),
            n if n == range.len() => 0..n,
            n => return Err(mismatch("update", param_len, n)),
        };
        if states != self.state_count() {
            return Err(crate::error::Error::internal(format!(
                "update: rule keeps {} state buffers, got {states}",
                self.state_count()
            )));
        }
        Ok(read)
    }

    /// How many state buffers (each the parameter's size) the rule keeps.
    pub fn state_count(&self) -> usize {
        match self {
            UpdateRule::Sgd(h) => usize::from(h.momentum != 0.0),
            UpdateRule::Adam(_) => 2,
        }
    }
}

pub trait Backend: Send + Sync {
    type Buffer: Send + Sync;

    fn name(&self) -> String;

    /// A zero-filled buffer of `len` elements.
    fn alloc(&self, dtype: DType, len: usize) -> Result<Self::Buffer>;

    fn upload(&self, data: &HostData) -> Result<Self::Buffer>;

    /// Overwrite `buf` (same dtype and length) with host data: an upload into a pooled buffer,
    /// so that a step's inputs cost one copy and no allocation.
    fn write(&self, buf: &mut Self::Buffer, data: HostView<'_>) -> Result<()>;

    fn download(&self, buf: &Self::Buffer) -> Result<HostData>;

    /// Run one op. `out` has exactly `out_shape`'s element count and the op's output dtype; the
    /// kernel overwrites all of it (never accumulates into it).
    fn execute(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, Self::Buffer>],
        out: &mut Self::Buffer,
        out_shape: &[usize],
        ctx: &KernelCtx,
    ) -> Result<()>;

    /// Sum of squares of an f32 buffer (for global-norm clipping), accumulated in f64.
    fn sum_squares(&self, buf: &Self::Buffer) -> Result<f64>;

    /// The sums of squares of several buffers, each as `sum_squares` gives it, added in order:
    /// a device backend overrides it to read every partial sum back at once rather than
    /// synchronising once per tensor.
    fn sum_squares_all(&self, bufs: &[&Self::Buffer]) -> Result<f64> {
        bufs.iter()
            .try_fold(0.0, |s, b| Ok(s + self.sum_squares(b)?))
    }

    /// buf *= factor, in place.
    fn scale_inplace(&self, buf: &mut Self::Buffer, factor: f32) -> Result<()>;

    /// dst += src, in place (gradient accumulation across micro-batches).
    fn add_inplace(&self, dst: &mut Self::Buffer, src: &Self::Buffer) -> Result<()>;

    /// The host memory of an f32 buffer, when this device's memory is the host's (CPU): host
    /// collectives then read and write it in place instead of through download/upload copies.
    fn host_f32<'a>(&self, _buf: &'a Self::Buffer) -> Option<&'a [f32]> {
        None
    }

    /// Mutable form of `host_f32`.
    fn host_f32_mut<'a>(&self, _buf: &'a mut Self::Buffer) -> Option<&'a mut [f32]> {
        None
    }

    /// One optimizer update of `param[range]` from `grad[range]`; `state` buffers hold
    /// `range.len()` elements (the whole parameter, or a ZeRO shard of it). `step` is 1-based
    /// (Adam's bias correction).
    fn update(
        &self,
        rule: &UpdateRule,
        step: u64,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        state: &mut [Self::Buffer],
        range: std::ops::Range<usize>,
    ) -> Result<()>;
}
