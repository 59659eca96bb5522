//! Neural-network ops: softmax, fused cross-entropy, layer norm, embedding, fused causal
//! attention, dropout. Ops that index by i32 data (embedding, cross-entropy) pass a flag that
//! the kernel sets to the first bad position; it is read back after the launch so a bad token id
//! is the same `Error::Batch` as on the CPU, never an out-of-bounds access.

use super::{Fl, FlMut, Launch, elems, f32_out, f32s, fl, fl_out, i32s, launch, numel, rows, sfx};
use crate::buffer::CudaBuffer;
use crate::device::driver;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig};
use weft_core::exec::{KernelCtx, TensorRef};
use weft_core::ir::Op;
use weft_core::{Error, Result};

/// Mirrors attention.cu's `AttGeom`.
#[repr(C)]
#[derive(Clone, Copy)]
struct AttGeom {
    b: i64,
    t: i64,
    h: i32,
    d: i32,
    scale: f32,
}

// SAFETY: `repr(C)` with the field types and order of the C struct.
unsafe impl DeviceRepr for AttGeom {}

/// Each lane of a warp holds at most this many channels of a head (attention.cu).
const ATT_MAX_HEAD_DIM: usize = 32 * 8;

impl Launch<'_> {
    pub(super) fn nn(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, CudaBuffer>],
        out: &mut CudaBuffer,
        shape: &[usize],
        ctx: &KernelCtx,
    ) -> Result<()> {
        let name = op.name();
        let s = sfx(name, out.dtype())?;
        let y = &mut fl_out(name, out)?;
        if y.is_empty() {
            return Ok(());
        }
        // Float inputs of any float type; the i32 ones (indices, labels) are read by the
        // functions that take them.
        let xs: Vec<Option<Fl>> = inputs.iter().map(|t| fl(name, t).ok()).collect();
        let x = |i: usize| {
            xs[i]
                .as_ref()
                .ok_or_else(|| Error::internal(format!("{name}: input {i} is not a float")))
        };
        let last = |i: usize| inputs[i].shape.last().copied().unwrap_or(1);
        match *op {
            Op::Softmax
            | Op::SoftmaxBackward
            | Op::LayerNorm { .. }
            | Op::LayerNormBackward { .. } => {
                let xs = (0..inputs.len()).map(x).collect::<Result<Vec<_>>>()?;
                self.row_op(op, s, &xs, last(0), y)
            }
            Op::LayerNormBackwardWeight { eps } => {
                let (xf, dy) = (f32s(name, &inputs[0])?, f32s(name, &inputs[1])?);
                self.layer_norm_weight(s, xf, inputs[0].shape, dy, eps, f32_only(name, y)?)
            }
            Op::Embedding => self.embedding(s, inputs, f32_only(name, y)?),
            Op::EmbeddingBackward { vocab } => {
                self.embedding_backward(s, inputs, vocab, f32_only(name, y)?, shape)
            }
            Op::CausalAttention { heads } => {
                let g = geom(name, inputs[0].shape, heads)?;
                launch!(self, format!("causal_attention_forward_{s}"), warps(&g)?; x(0)?, y, &g)
            }
            Op::CausalAttentionBackward { heads } => {
                self.attention_backward(s, x(0)?, x(1)?, inputs[0].shape, heads, y)
            }
            Op::CrossEntropy | Op::CrossEntropyBackward => {
                self.cross_entropy(op, s, inputs, f32_only(name, y)?)
            }
            Op::Dropout { p, seed } | Op::DropoutBackward { p, seed } => {
                self.dropout(op, s, x(0)?, p, seed, ctx.step, y)
            }
            _ => Err(Error::internal(format!(
                "{name}: routed to the wrong kernel family"
            ))),
        }
    }

    /// The one-block-per-row kernels: softmax and layer norm, forward and backward.
    fn row_op(&self, op: &Op, s: &str, xs: &[&Fl], c: usize, y: &mut FlMut) -> Result<()> {
        let (cfg, c64) = (rows(y.len() / c)?, c as i64);
        match *op {
            Op::Softmax => launch!(self, format!("softmax_forward_{s}"), cfg; xs[0], y, &c64),
            Op::SoftmaxBackward => {
                launch!(self, format!("softmax_backward_{s}"), cfg; xs[0], xs[1], y, &c64)
            }
            Op::LayerNorm { eps } => launch!(self, format!("layer_norm_forward_{s}"), cfg;
                xs[0], xs[1], xs[2], y, &c64, &eps),
            Op::LayerNormBackward { eps } => launch!(self, format!("layer_norm_backward_{s}"), cfg;
                xs[0], xs[1], xs[2], y, &c64, &eps),
            _ => Err(Error::internal(format!("{}: not a row op", op.name()))),
        }
    }

    fn layer_norm_weight(
        &self,
        s: &str,
        x: &CudaSlice<f32>,
        x_shape: &[usize],
        dy: &CudaSlice<f32>,
        eps: f32,
        dw: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let c = x_shape.last().copied().unwrap_or(1);
        let r = numel(x_shape) / c;
        if r == 0 {
            return self
                .b
                .dev
                .streams
                .compute
                .memset_zeros(dw)
                .map_err(|e| driver("memset", e));
        }
        let mut stats = self.b.scratch(2 * r)?;
        let st = f32_out("layer_norm_backward_weight", &mut stats)?;
        let (c64, r64) = (c as i64, r as i64);
        launch!(self, format!("layer_norm_row_stats_{s}"), rows(r)?; x, &mut *st, &c64, &eps)?;
        launch!(self, format!("layer_norm_backward_weight_{s}"), elems(c);
            x, dy, &*st, dw, &r64, &c64)
    }

    fn attention_backward(
        &self,
        s: &str,
        qkv: &Fl,
        dy: &Fl,
        shape: &[usize],
        heads: usize,
        dqkv: &mut FlMut,
    ) -> Result<()> {
        let g = geom("causal_attention_backward", shape, heads)?;
        let cfg = warps(&g)?;
        let mut stats = self.b.scratch(2 * (g.b * g.t) as usize * heads)?;
        let st = f32_out("causal_attention_backward", &mut stats)?;
        launch!(self, format!("causal_attention_backward_stats_{s}"), cfg; qkv, dy, &mut *st, &g)?;
        launch!(self, format!("causal_attention_backward_dq_{s}"), cfg;
            qkv, dy, &*st, &mut *dqkv, &g)?;
        launch!(self, format!("causal_attention_backward_dkv_{s}"), cfg; qkv, dy, &*st, dqkv, &g)
    }

    fn embedding(
        &self,
        s: &str,
        inputs: &[TensorRef<'_, CudaBuffer>],
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (table, idx) = (
            f32s("embedding", &inputs[0])?,
            i32s("embedding", &inputs[1])?,
        );
        let (vocab, c) = (inputs[0].shape[0], inputs[0].shape[1]);
        let mut bad = self.flag()?;
        let (n, c64, v64) = (idx.len() as i64, c as i64, vocab as i64);
        launch!(self, format!("embedding_forward_{s}"), elems(y.len());
            table, idx, y, &n, &c64, &v64, &mut bad)?;
        self.check_flag("embedding", "index", "the table's rows", &bad, idx, vocab)
    }

    fn embedding_backward(
        &self,
        s: &str,
        inputs: &[TensorRef<'_, CudaBuffer>],
        vocab: usize,
        y: &mut CudaSlice<f32>,
        shape: &[usize],
    ) -> Result<()> {
        let op = "embedding_backward";
        let (idx, dy) = (i32s(op, &inputs[0])?, f32s(op, &inputs[1])?);
        let c = shape[1];
        let stream = &self.b.dev.streams.compute;
        // f32 outputs accumulate in place; bf16/f16 will need an f32 scratch and a cast.
        stream.memset_zeros(y).map_err(|e| driver("memset", e))?;
        if dy.is_empty() {
            return Ok(());
        }
        let mut bad = self.flag()?;
        let (n, c64, v64) = (idx.len() as i64, c as i64, vocab as i64);
        launch!(self, format!("embedding_backward_{s}"), elems(dy.len());
            idx, dy, y, &n, &c64, &v64, &mut bad)?;
        self.check_flag(op, "index", "the table's rows", &bad, idx, vocab)
    }

    fn cross_entropy(
        &self,
        op: &Op,
        s: &str,
        inputs: &[TensorRef<'_, CudaBuffer>],
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let name = op.name();
        let (logits, labels) = (f32s(name, &inputs[0])?, i32s(name, &inputs[1])?);
        let vocab = inputs[0].shape.last().copied().unwrap_or(1);
        let r = labels.len();
        if numel(inputs[0].shape) != r * vocab {
            return Err(Error::shape(
                name,
                format!(
                    "labels {:?} do not match the rows of logits {:?}",
                    inputs[1].shape, inputs[0].shape
                ),
            ));
        }
        let mut bad = self.flag()?;
        let v64 = vocab as i64;
        if matches!(op, Op::CrossEntropy) {
            launch!(self, format!("cross_entropy_forward_{s}"), rows(r)?;
                logits, labels, y, &v64, &mut bad)?;
        } else {
            let dloss = f32s(name, &inputs[2])?;
            launch!(self, format!("cross_entropy_backward_{s}"), rows(r)?;
                logits, labels, dloss, y, &v64, &mut bad)?;
        }
        self.check_flag(name, "label", "the vocabulary", &bad, labels, vocab)
    }

    fn dropout(
        &self,
        op: &Op,
        s: &str,
        x: &Fl,
        p: f32,
        seed: u64,
        step: u64,
        y: &mut FlMut,
    ) -> Result<()> {
        let name = op.name();
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::shape(name, format!("p must lie in [0, 1], got {p}")));
        }
        let n = y.len() as i64;
        if p >= 1.0 {
            // Everything dropped; 1/(1-p) would be inf and 0 * inf NaN.
            let zero = 0.0f32;
            return launch!(self, format!("fill_{s}"), elems(y.len()); y, &zero, &n);
        }
        let scale = 1.0 / (1.0 - p);
        let dir = if matches!(op, Op::Dropout { .. }) {
            "forward"
        } else {
            "backward"
        };
        launch!(self, format!("dropout_{dir}_{s}"), elems(y.len());
            x, y, &n, &p, &scale, &seed, &step)
    }

    /// A device flag holding "no bad position" (i64::MAX).
    fn flag(&self) -> Result<CudaSlice<i64>> {
        self.b
            .dev
            .streams
            .compute
            .clone_htod(&[i64::MAX])
            .map_err(|e| driver("flag upload", e))
    }

    /// `Error::Batch` naming the first flagged position and its value, as the CPU reports it.
    fn check_flag(
        &self,
        op: &str,
        what: &str,
        range: &str,
        bad: &CudaSlice<i64>,
        values: &CudaSlice<i32>,
        bound: usize,
    ) -> Result<()> {
        let stream = &self.b.dev.streams.compute;
        let pos = stream
            .clone_dtoh(bad)
            .map_err(|e| driver("flag download", e))?;
        stream.synchronize().map_err(|e| driver(op, e))?;
        let Some(&pos) = pos.first().filter(|&&p| p != i64::MAX) else {
            return Ok(());
        };
        let pos = pos as usize;
        let v = stream
            .clone_dtoh(&values.slice(pos..pos + 1))
            .map_err(|e| driver("flag download", e))?;
        stream.synchronize().map_err(|e| driver(op, e))?;
        Err(Error::batch(format!(
            "{op}: {what} {} at position {pos} is outside {range} [0, {bound})",
            v.first().copied().unwrap_or_default()
        )))
    }
}

/// The output as f32, for the ops whose output is f32 whatever their inputs (`check` and the
/// widening route make that so).
fn f32_only<'a>(op: &str, y: &'a mut FlMut<'_>) -> Result<&'a mut CudaSlice<f32>> {
    match y {
        FlMut::F32(s) => Ok(s),
        FlMut::U16(_) => Err(Error::internal(format!("{op}: output must be f32"))),
    }
}

fn geom(op: &str, shape: &[usize], heads: usize) -> Result<AttGeom> {
    let &[b, t, c3] = shape else {
        return Err(Error::shape(
            op,
            format!("qkv must be [B, T, 3C], got {shape:?}"),
        ));
    };
    if c3 % 3 != 0 || heads == 0 || (c3 / 3) % heads != 0 {
        return Err(Error::shape(
            op,
            format!("qkv {shape:?}: last axis must be 3C with C divisible by heads={heads}"),
        ));
    }
    let d = c3 / 3 / heads;
    if d > ATT_MAX_HEAD_DIM {
        return Err(Error::unsupported(
            format!("{op} on CUDA"),
            format!("head dim {d} (at most {ATT_MAX_HEAD_DIM})"),
        ));
    }
    Ok(AttGeom {
        b: b as i64,
        t: t as i64,
        h: heads as i32,
        d: d as i32,
        scale: 1.0 / (d as f32).sqrt(),
    })
}

/// Rows (warps) per block: they share each tile of staged keys or queries.
pub(super) const ATT_WARPS: u32 = 8;

/// Rows per staged tile (attention.cu's `ATT_TILE`): two tiles stay within 32 KiB.
pub(super) fn att_tile(d: i32) -> u32 {
    if d <= 128 { 32 } else { 16 }
}

/// One warp per row; a block is `ATT_WARPS` consecutive rows of one (batch, head): the grid is
/// (row tiles, batch x heads), with shared memory for two staged tiles.
fn warps(g: &AttGeom) -> Result<LaunchConfig> {
    let too_big = |what: &str| Error::unsupported("causal attention on CUDA", what.to_string());
    let tiles = u32::try_from((g.t as u64).div_ceil(u64::from(ATT_WARPS)).max(1))
        .map_err(|_| too_big("> 2^32 row tiles"))?;
    let heads = u32::try_from(g.b * i64::from(g.h))
        .ok()
        .filter(|&n| n <= 65_535)
        .ok_or_else(|| too_big("more than 65535 (batch x head) pairs"))?;
    Ok(LaunchConfig {
        grid_dim: (tiles, heads.max(1), 1),
        block_dim: (32 * ATT_WARPS, 1, 1),
        shared_mem_bytes: 2 * att_tile(g.d) * g.d as u32 * 4,
    })
}
