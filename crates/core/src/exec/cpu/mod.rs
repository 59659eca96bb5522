//! The CPU backend: host memory (`HostData`) and f32 kernels for every op of the IR.
//!
//! Table of contents:
//! - `util`        argument plumbing: typed input views, dtype/shape checks, row-parallel loops
//! - `math`        vectorisable reductions and a polynomial exp
//! - `simd`        runtime AVX2 / AVX-512 dispatch for the kernel loops
//! - `elementwise` unary (+ backward), broadcasting binary, scale, expand, sum_to
//! - `matmul`      batched matmul through `gemm`; the strided gemm wrapper
//! - `reduce`      sum / mean / max over one axis, max backward
//! - `shape`       reshape, permute, slice (+ backward), concat
//! - `softmax`     softmax and cross-entropy, forward and backward
//! - `layer_norm`  layer norm forward, backward (dx) and backward weight (dw)
//! - `embedding`   embedding lookup and its scatter-add backward
//! - `dropout`     counter-based inverted dropout, forward and backward
//! - `attention`   fused causal multi-head attention, forward and backward
//! - `metrics`     argmax (and its vocabulary-sharded bid/index steps), equal
//! - `optim`       SGD and Adam/AdamW update math on slices
//! - `widen`       16-bit floats: cast, and every kernel run in f32 on widened inputs
//!
//! This file holds the `Backend` impl: it checks arity and dtypes, picks the kernel for the op,
//! and runs everything inside the backend's own rayon pool when one was requested.

mod attention;
mod dropout;
mod elementwise;
mod embedding;
mod layer_norm;
mod math;
mod matmul;
mod metrics;
mod moe;
pub mod optim;
mod reduce;
mod shape;
mod simd;
mod softmax;
mod util;
mod widen;

#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::exec::{Backend, HostData, HostView, KernelCtx, TensorRef, UpdateRule};
use crate::ir::{DType, Op, Shape};
use util::{F32In, any_in, check_out_len, f32_in, f32_out, i32_in};

/// The CPU backend. Kernels parallelise with rayon; `threads` pins a private pool size.
pub struct CpuBackend {
    /// None: run on rayon's global pool (its default size).
    pool: Option<rayon::ThreadPool>,
}

impl CpuBackend {
    /// A backend running its kernels on `threads` threads; 0 means rayon's default (the global
    /// pool). Should a private pool fail to start, the global pool is used instead.
    pub fn new(threads: usize) -> CpuBackend {
        let pool = (threads > 0)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .ok()
            })
            .flatten();
        CpuBackend { pool }
    }

    /// Number of threads the kernels use.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    /// Runs `f` in this backend's pool, so nested rayon and gemm calls use its threads.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::new(0)
    }
}

fn mismatch(what: &str, a: usize, b: usize) -> Error {
    Error::internal(format!("{what}: buffers have {a} and {b} elements"))
}

/// `Error::shape` unless the op's (possibly batch-symbolic) shape agrees with the concrete one.
fn check_op_shape(op: &str, declared: &Shape, concrete: &[usize]) -> Result<()> {
    let fits = declared.rank() == concrete.len()
        && declared
            .dims()
            .iter()
            .zip(concrete)
            .all(|(d, &c)| d.fixed().is_none_or(|f| f == c));
    if !fits {
        return Err(Error::shape(
            op,
            format!("output shape {concrete:?} does not match {declared}"),
        ));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buffer = HostData;

    fn host_f32<'a>(&self, buf: &'a HostData) -> Option<&'a [f32]> {
        buf.as_f32()
    }

    fn host_f32_mut<'a>(&self, buf: &'a mut HostData) -> Option<&'a mut [f32]> {
        buf.as_f32_mut()
    }

    fn name(&self) -> String {
        format!("cpu({} threads)", self.threads())
    }

    fn alloc(&self, dtype: DType, len: usize) -> Result<HostData> {
        Ok(HostData::zeros(dtype, len))
    }

    fn upload(&self, data: &HostData) -> Result<HostData> {
        Ok(data.clone())
    }

    fn write(&self, buf: &mut HostData, data: HostView<'_>) -> Result<()> {
        match (buf, data) {
            (HostData::F32(b), HostView::F32(d)) if b.len() == d.len() => b.copy_from_slice(d),
            (HostData::I32(b), HostView::I32(d)) if b.len() == d.len() => b.copy_from_slice(d),
            (HostData::BF16(b), HostView::BF16(d)) | (HostData::F16(b), HostView::F16(d))
                if b.len() == d.len() =>
            {
                b.copy_from_slice(d)
            }
            (b, d) => {
                return Err(Error::internal(format!(
                    "write of {} x {} into a {} x {} buffer",
                    d.dtype(),
                    d.len(),
                    b.dtype(),
                    b.len()
                )));
            }
        }
        Ok(())
    }

    fn download(&self, buf: &HostData) -> Result<HostData> {
        Ok(buf.clone())
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, HostData>],
        out: &mut HostData,
        out_shape: &[usize],
        ctx: &KernelCtx,
    ) -> Result<()> {
        let name = op.name();
        match op.arity() {
            Some(n) if n != inputs.len() => {
                return Err(Error::shape(
                    name,
                    format!("expects {n} inputs, got {}", inputs.len()),
                ));
            }
            None if inputs.is_empty() => {
                return Err(Error::shape(name, "expects at least one input"));
            }
            _ => {}
        }
        self.run(|| match op {
            Op::Cast { .. } => widen::cast(inputs, out, out_shape),
            _ if !op.moves_data() && crate::exec::touches_half(inputs, out.dtype()) => {
                widen::execute_widened(op, inputs, out, out_shape, ctx, dispatch)
            }
            _ => dispatch(op, inputs, out, out_shape, ctx),
        })
    }

    fn sum_squares(&self, buf: &HostData) -> Result<f64> {
        let x = buf.as_f32().ok_or_else(|| Error::DType {
            what: "sum_squares".into(),
            expected: "f32".into(),
            got: buf.dtype().to_string(),
        })?;
        Ok(self.run(|| sum_squares_f64(x)))
    }

    fn scale_inplace(&self, buf: &mut HostData, factor: f32) -> Result<()> {
        let x = buf
            .as_f32_mut()
            .ok_or_else(|| Error::internal("scale_inplace: buffer is not f32"))?;
        self.run(|| util::for_chunks(x, |_, c| c.iter_mut().for_each(|v| *v *= factor)));
        Ok(())
    }

    fn add_inplace(&self, dst: &mut HostData, src: &HostData) -> Result<()> {
        let s = src
            .as_f32()
            .ok_or_else(|| Error::internal("add_inplace: source is not f32"))?;
        let d = dst
            .as_f32_mut()
            .ok_or_else(|| Error::internal("add_inplace: destination is not f32"))?;
        if d.len() != s.len() {
            return Err(mismatch("add_inplace", d.len(), s.len()));
        }
        self.run(|| {
            util::for_chunks(d, |start, c| {
                c.iter_mut().zip(&s[start..]).for_each(|(d, s)| *d += s)
            })
        });
        Ok(())
    }

    fn update(
        &self,
        rule: &UpdateRule,
        step: u64,
        param: &mut HostData,
        grad: &HostData,
        state: &mut [HostData],
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let p = param
            .as_f32_mut()
            .ok_or_else(|| Error::internal("update: parameter is not f32"))?;
        let g = grad
            .as_f32()
            .ok_or_else(|| Error::internal("update: gradient is not f32"))?;
        let g = &g[rule.grad_range(p.len(), g.len(), &range, state.len())?];
        let p = &mut p[range];
        let mut bufs = Vec::with_capacity(state.len());
        for s in state.iter_mut() {
            let b = s
                .as_f32_mut()
                .ok_or_else(|| Error::internal("update: state is not f32"))?;
            if b.len() != p.len() {
                return Err(mismatch("update state", p.len(), b.len()));
            }
            bufs.push(b);
        }
        self.run(|| apply_rule(rule, step, p, g, bufs));
        Ok(())
    }
}

/// Sum of squares in f64. Fixed-size chunks summed in order, so the result does not depend on
/// the thread count or on rayon's work stealing.
fn sum_squares_f64(x: &[f32]) -> f64 {
    use rayon::prelude::*;
    const CHUNK: usize = 16 * 1024;
    if x.len() >= util::PAR_MIN_ELEMS && rayon::current_num_threads() > 1 {
        let parts: Vec<f64> = x.par_chunks(CHUNK).map(math::sum_squares_f64).collect();
        parts.iter().sum()
    } else {
        x.chunks(CHUNK).map(math::sum_squares_f64).sum()
    }
}

fn apply_rule(rule: &UpdateRule, step: u64, p: &mut [f32], g: &[f32], mut bufs: Vec<&mut [f32]>) {
    match (rule, bufs.as_mut_slice()) {
        (UpdateRule::Sgd(h), _) => optim::sgd_step(h, p, g, bufs.pop(), step <= 1),
        (UpdateRule::Adam(h), [m, v]) => optim::adam_step(h, step, p, g, m, v),
        // `grad_range` checked the state count.
        (UpdateRule::Adam(_), _) => {}
    }
}

/// Picks and runs the kernel for `op` (arity already checked).
fn dispatch(
    op: &Op,
    inputs: &[TensorRef<'_, HostData>],
    out: &mut HostData,
    out_shape: &[usize],
    ctx: &KernelCtx,
) -> Result<()> {
    let name = op.name();
    match op {
        Op::Input { .. } | Op::Parameter { .. } => Err(Error::internal(format!(
            "{name}: leaves are fed by the executor, not executed"
        ))),
        _ if op.moves_data() => dispatch_data_movement(op, inputs, out, out_shape),
        Op::Argmax => metrics::argmax(
            f32_in(name, inputs, 0)?,
            metrics::i32_out(name, out, out_shape)?,
        ),
        Op::BidIndex => metrics::bid_index(
            f32_in(name, inputs, 0)?.data,
            metrics::i32_out(name, out, out_shape)?,
        ),
        Op::Equal => {
            let (a, b) = (any_in(name, inputs, 0)?, any_in(name, inputs, 1)?);
            util::expect_shape(name, "rhs", inputs[1].shape, inputs[0].shape)?;
            metrics::equal(a, b, f32_out(name, out, out_shape)?)
        }
        _ => {
            let y = f32_out(name, out, out_shape)?;
            let args = Args {
                name,
                inputs,
                shape: out_shape,
            };
            dispatch_tensor(op, &args, y, ctx)
        }
    }
}

/// The inputs and output shape of one f32-output launch, with typed accessors.
struct Args<'i, 'a> {
    name: &'static str,
    inputs: &'i [TensorRef<'a, HostData>],
    shape: &'i [usize],
}

impl<'a> Args<'_, 'a> {
    /// Input `i` as f32 (else `Error::DType` naming the op).
    fn f(&self, i: usize) -> Result<F32In<'a>> {
        f32_in(self.name, self.inputs, i)
    }

    /// Input `i` as i32 indices or labels.
    fn label(&self, i: usize) -> Result<util::I32In<'a>> {
        i32_in(self.name, self.inputs, i)
    }

    /// Input `i` as f32, required to have the output's shape (elementwise ops).
    fn same(&self, i: usize) -> Result<F32In<'a>> {
        let x = self.f(i)?;
        util::expect_shape(self.name, &format!("input {i}"), x.shape, self.shape)?;
        Ok(x)
    }
}

/// General tensor ops: fill, elementwise, reductions, matmul; the rest go to `dispatch_nn`.
fn dispatch_tensor(op: &Op, a: &Args, y: &mut [f32], ctx: &KernelCtx) -> Result<()> {
    let shape = a.shape;
    match *op {
        Op::Fill {
            value,
            shape: ref declared,
        } => {
            check_op_shape(a.name, declared, shape)?;
            y.fill(value);
        }
        Op::LossScale => y.fill(ctx.loss_scale),
        Op::Unary(u) => elementwise::unary_forward(u, a.same(0)?.data, y),
        Op::UnaryBackward(u) => elementwise::unary_backward(u, a.same(0)?.data, a.same(1)?.data, y),
        Op::Binary(b) => elementwise::binary_forward(b, a.f(0)?, a.f(1)?, y, shape)?,
        Op::Scale { factor } => elementwise::scale(a.same(0)?.data, factor, y),
        Op::SumTo {
            shape: ref declared,
        } => {
            check_op_shape(a.name, declared, shape)?;
            elementwise::sum_to(a.f(0)?, y, shape)?;
        }
        Op::Reduce {
            op: r,
            axis,
            keepdim,
        } => reduce::reduce_forward(r, a.f(0)?, axis, keepdim, y, shape)?,
        Op::MaxBackward { axis, keepdim } => {
            reduce::max_backward(a.f(0)?, a.f(1)?, axis, keepdim, y, shape)?
        }
        Op::MatMul { trans_a, trans_b } => {
            matmul::matmul_forward(a.f(0)?, a.f(1)?, trans_a, trans_b, y, shape)?
        }
        Op::TpCopy => y.copy_from_slice(a.same(0)?.data),
        Op::MoeGate {
            top_k,
            capacity_factor,
            weighted,
        } => {
            let p = a.same(0)?;
            let e = p.shape[1];
            moe::gate(p.data, e, top_k, capacity_factor, weighted, y)
        }
        Op::MoeGateBackward {
            top_k,
            capacity_factor,
        } => {
            let (p, dy) = (a.same(0)?, a.same(1)?);
            moe::gate_backward(p.data, dy.data, p.shape[1], top_k, capacity_factor, y)
        }
        Op::MoeDispatch { .. }
        | Op::MoeDispatchBackward { .. }
        | Op::MoeCombine { .. }
        | Op::MoeCombineBackward { .. }
        | Op::MoeCombineGates { .. } => {
            let ins = (0..a.inputs.len())
                .map(|i| a.f(i))
                .collect::<Result<Vec<_>>>()?;
            moe::execute(op, &ins, y)?
        }
        Op::ColumnMask { start, valid, fill } => {
            let x = a.same(0)?;
            crate::exec::tp::column_mask(
                x.data,
                *x.shape.last().unwrap_or(&1),
                start,
                valid,
                fill,
                y,
            )
        }
        Op::VocabOneHot { start, width } => {
            crate::exec::tp::one_hot(a.label(0)?.data, start, width, y)?
        }
        Op::ArgmaxBid { start } => {
            metrics::argmax_bid(a.f(0)?, a.f(1)?.data, start, y);
        }
        Op::TpShard { cut, index } => {
            let x = a.f(0)?;
            crate::exec::tp::cut_into(x.data, x.shape, cut, index, y)?
        }
        _ => dispatch_nn(op, a, y, ctx)?,
    }
    Ok(())
}

/// Neural-network ops: softmax, layer norm, embedding, attention, cross-entropy, dropout.
fn dispatch_nn(op: &Op, a: &Args, y: &mut [f32], ctx: &KernelCtx) -> Result<()> {
    let shape = a.shape;
    match *op {
        Op::Softmax => softmax::softmax_forward(a.f(0)?, y, shape),
        Op::SoftmaxBackward => softmax::softmax_backward(a.f(0)?, a.f(1)?, y, shape),
        Op::LayerNorm { eps } => {
            layer_norm::layer_norm_forward(a.f(0)?, a.f(1)?, a.f(2)?, eps, y, shape)
        }
        Op::LayerNormBackward { eps } => {
            layer_norm::layer_norm_backward(a.f(0)?, a.f(1)?, a.f(2)?, eps, y, shape)
        }
        Op::LayerNormBackwardWeight { eps } => {
            layer_norm::layer_norm_backward_weight(a.f(0)?, a.f(1)?, eps, y, shape)
        }
        Op::Embedding => embedding::embedding_forward(a.f(0)?, a.label(1)?, y, shape),
        Op::EmbeddingBackward { vocab } => {
            embedding::embedding_backward(a.label(0)?, a.f(1)?, vocab, y, shape)
        }
        Op::CausalAttention { heads } => {
            attention::causal_attention_forward(a.f(0)?, heads, y, shape)
        }
        Op::CausalAttentionBackward { heads } => {
            attention::causal_attention_backward(a.f(0)?, a.f(1)?, heads, y, shape)
        }
        Op::CrossEntropy => {
            let (logits, labels) = (a.f(0)?, a.label(1)?);
            util::expect_shape(a.name, "output", shape, labels.shape)?;
            softmax::cross_entropy_forward(logits, labels, y)
        }
        Op::CrossEntropyBackward => {
            softmax::cross_entropy_backward(a.f(0)?, a.label(1)?, a.f(2)?, y, shape)
        }
        Op::Dropout { p, seed } => dropout::dropout_forward(a.same(0)?.data, p, seed, ctx.step, y),
        Op::DropoutBackward { p, seed } => {
            dropout::dropout_backward(a.same(0)?.data, p, seed, ctx.step, y)
        }
        _ => Err(Error::internal(format!(
            "{}: routed to the wrong kernel family",
            a.name
        ))),
    }
}

/// Dtype-generic data movement: the output has the (common) dtype of the inputs.
fn dispatch_data_movement(
    op: &Op,
    inputs: &[TensorRef<'_, HostData>],
    out: &mut HostData,
    out_shape: &[usize],
) -> Result<()> {
    let name = op.name();
    check_out_len(name, out, out_shape)?;
    let xs = (0..inputs.len())
        .map(|i| any_in(name, inputs, i))
        .collect::<Result<Vec<_>>>()?;
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape).collect();
    let want = out.dtype();
    if let Some(x) = xs.iter().find(|x| x.dtype() != want) {
        return Err(Error::DType {
            what: format!("{name} input"),
            expected: want.to_string(),
            got: x.dtype().to_string(),
        });
    }
    fn all<'a, T>(
        xs: &[&'a HostData],
        f: impl Fn(&'a HostData) -> Option<&'a [T]>,
    ) -> Vec<&'a [T]> {
        xs.iter().filter_map(|x| f(x)).collect()
    }
    match out {
        HostData::F32(y) => move_data(op, &all(&xs, HostData::as_f32), &shapes, y, out_shape),
        HostData::I32(y) => move_data(op, &all(&xs, HostData::as_i32), &shapes, y, out_shape),
        HostData::BF16(y) | HostData::F16(y) => {
            move_data(op, &all(&xs, HostData::as_u16), &shapes, y, out_shape)
        }
    }
}

fn move_data<T: Copy + Default + Send + Sync>(
    op: &Op,
    xs: &[&[T]],
    shapes: &[&[usize]],
    y: &mut [T],
    shape: &[usize],
) -> Result<()> {
    let (x, xs_shape) = (xs[0], shapes[0]);
    match *op {
        Op::Reshape {
            shape: ref declared,
        } => {
            check_op_shape(op.name(), declared, shape)?;
            shape::reshape(x, y)
        }
        Op::Permute { ref perm } => shape::permute(x, xs_shape, perm, y, shape),
        Op::Slice { axis, start, end } => shape::slice(x, xs_shape, (axis, start, end), y, shape),
        Op::SliceBackward { axis, start, len } => {
            shape::slice_backward(x, xs_shape, (axis, start, len), y, shape)
        }
        Op::Concat { axis } => {
            let parts: Vec<(&[T], &[usize])> =
                xs.iter().copied().zip(shapes.iter().copied()).collect();
            shape::concat(&parts, axis, y, shape)
        }
        Op::Expand {
            shape: ref declared,
        } => {
            check_op_shape(op.name(), declared, shape)?;
            elementwise::expand(x, xs_shape, y, shape)
        }
        _ => Err(Error::internal(format!(
            "{}: not a data-movement op",
            op.name()
        ))),
    }
}
