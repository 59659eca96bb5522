//! Elementwise kernels: unary ops and their backward, numpy-broadcasting binary ops, scale,
//! expand (broadcast) and its adjoint sum_to.
//!
//! Each op is a generic loop instantiated with a per-element closure, so the `match` on the op
//! happens once per tensor and the inner loop is straight-line code LLVM can vectorise. GELU,
//! the one compute-bound op here, gets `simd_fn!` chunk functions (AVX2/AVX-512 dispatch).

use super::math;
use super::simd::simd_fn;
use super::util::{
    F32In, PAR_MIN_ELEMS, broadcast_shape, broadcast_strides, expect_shape, for_chunks,
    for_each_row, numel,
};
use crate::error::{Error, Result};
use crate::ir::{BinaryOp, UnaryOp};
use rayon::prelude::*;

/// sqrt(2/pi), the GELU tanh-approximation's inner scale (PyTorch's kBeta).
const GELU_BETA: f32 = 0.797_884_6;
const GELU_KAPPA: f32 = 0.044_715;

/// GELU, tanh approximation, as PyTorch's gelu(approximate='tanh').
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let inner = GELU_BETA * (x + GELU_KAPPA * x * x * x);
    0.5 * x * (1.0 + math::tanh_abs(inner))
}

/// d gelu / dx, in PyTorch's GeluBackward (tanh) form.
#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    let x_sq = x * x;
    let inner = GELU_BETA * (x + GELU_KAPPA * x_sq * x);
    let t = math::tanh_abs(inner);
    let left = 0.5 * x;
    let right = 1.0 + t;
    let left_derivative = 0.5 * right;
    let right_derivative = left * (1.0 - t * t) * GELU_BETA * (1.0 + 3.0 * GELU_KAPPA * x_sq);
    left_derivative + right_derivative
}

/// y = f(x), chunk-parallel on large tensors.
fn map1(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    for_chunks(y, |start, out| {
        for (o, &v) in out.iter_mut().zip(&x[start..]) {
            *o = f(v);
        }
    });
}

/// out = f(a, b) elementwise over equal-length slices, chunk-parallel on large tensors.
fn map2(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    for_chunks(out, |start, o| {
        for ((o, &x), &y) in o.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            *o = f(x, y);
        }
    });
}

/// y [...] = op(x [...]).
pub(super) fn unary_forward(op: UnaryOp, x: &[f32], y: &mut [f32]) {
    match op {
        UnaryOp::Relu => map1(x, y, |v| if v > 0.0 { v } else { 0.0 }),
        UnaryOp::Gelu => gelu_forward(x, y),
        UnaryOp::Tanh => map1(x, y, f32::tanh),
        UnaryOp::Exp => map1(x, y, f32::exp),
        UnaryOp::Log => map1(x, y, f32::ln),
        UnaryOp::Neg => map1(x, y, |v| -v),
        UnaryOp::Sqrt => map1(x, y, f32::sqrt),
    }
}

/// dx [...] = dy * op'(x), for (x, dy) of the same shape.
pub(super) fn unary_backward(op: UnaryOp, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    match op {
        // PyTorch's threshold_backward: the gradient at exactly 0 is 0.
        UnaryOp::Relu => map2(x, dy, dx, |v, g| if v > 0.0 { g } else { 0.0 }),
        UnaryOp::Gelu => gelu_backward(x, dy, dx),
        UnaryOp::Tanh => map2(x, dy, dx, |v, g| {
            let t = v.tanh();
            g * (1.0 - t * t)
        }),
        UnaryOp::Exp => map2(x, dy, dx, |v, g| g * v.exp()),
        UnaryOp::Log => map2(x, dy, dx, |v, g| g / v),
        UnaryOp::Neg => map2(x, dy, dx, |_, g| -g),
        UnaryOp::Sqrt => map2(x, dy, dx, |v, g| g / (2.0 * v.sqrt())),
    }
}

simd_fn! {
    /// y = gelu(x) over one chunk.
    fn gelu_chunk(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = gelu(v);
        }
    }
}

simd_fn! {
    /// dx = dy * gelu'(x) over one chunk.
    fn gelu_backward_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
            *o = g * gelu_grad(v);
        }
    }
}

pub(super) fn gelu_forward(x: &[f32], y: &mut [f32]) {
    for_chunks(y, |start, out| gelu_chunk(&x[start..], out));
}

pub(super) fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for_chunks(dx, |start, out| {
        gelu_backward_chunk(&x[start..], &dy[start..], out)
    });
}

/// y = x * factor.
pub(super) fn scale(x: &[f32], factor: f32, y: &mut [f32]) {
    map1(x, y, |v| v * factor);
}

/// out [broadcast(a, b)] = a op b with numpy broadcasting.
pub(super) fn binary_forward(
    op: BinaryOp,
    a: F32In,
    b: F32In,
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<()> {
    let name = op.name();
    let shape = broadcast_shape(name, a.shape, b.shape)?;
    expect_shape(name, "output", out_shape, &shape)?;
    match op {
        BinaryOp::Add => binary_with(a, b, out, out_shape, |x, y| x + y),
        BinaryOp::Sub => binary_with(a, b, out, out_shape, |x, y| x - y),
        BinaryOp::Mul => binary_with(a, b, out, out_shape, |x, y| x * y),
        BinaryOp::Div => binary_with(a, b, out, out_shape, |x, y| x / y),
    }
    Ok(())
}

/// Length of the trailing block `small` repeats over when broadcast to `out`, i.e. `small`'s
/// shape with leading 1s dropped is a suffix of `out`'s (the bias-add pattern [N, C] + [C]).
fn trailing_block(small: &[usize], out: &[usize]) -> Option<usize> {
    let lead = small.iter().take_while(|&&d| d == 1).count();
    let core = &small[lead..];
    (core.len() <= out.len() && out.ends_with(core)).then(|| numel(core))
}

fn binary_with(
    a: F32In,
    b: F32In,
    out: &mut [f32],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync + Copy,
) {
    let n = out.len();
    if a.data.len() == n && b.data.len() == n {
        return map2(a.data, b.data, out, f);
    }
    if b.data.len() == 1 && a.data.len() == n {
        let y = b.data[0];
        return map1(a.data, out, move |x| f(x, y));
    }
    if a.data.len() == 1 && b.data.len() == n {
        let x = a.data[0];
        return map1(b.data, out, move |y| f(x, y));
    }
    if a.data.len() == n
        && let Some(l) = trailing_block(b.shape, out_shape).filter(|&l| l > 0)
    {
        return rows_with_block(a.data, b.data, l, out, f);
    }
    if b.data.len() == n
        && let Some(l) = trailing_block(a.shape, out_shape).filter(|&l| l > 0)
    {
        return rows_with_block(b.data, a.data, l, out, move |y, x| f(x, y));
    }
    binary_general(a, b, out, out_shape, f);
}

/// out[r, j] = f(full[r, j], block[j]) for rows of length `block.len()`.
fn rows_with_block(
    full: &[f32],
    block: &[f32],
    l: usize,
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    super::util::for_rows(out, l, |r, o| {
        for ((o, &x), &y) in o.iter_mut().zip(&full[r * l..]).zip(block) {
            *o = f(x, y);
        }
    });
}

/// Any broadcast: walk the output's rows with per-input broadcast strides.
fn binary_general(
    a: F32In,
    b: F32In,
    out: &mut [f32],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32,
) {
    // Both broadcast to out_shape: checked by the caller through broadcast_shape.
    let (Some(sa), Some(sb)) = (
        broadcast_strides(a.shape, out_shape),
        broadcast_strides(b.shape, out_shape),
    ) else {
        return;
    };
    let last = out_shape.last().copied().unwrap_or(1);
    let (ia, ib) = (
        sa.last().copied().unwrap_or(0),
        sb.last().copied().unwrap_or(0),
    );
    for_each_row(out_shape, [&sa, &sb], |row, [oa, ob]| {
        let o = &mut out[row * last..(row + 1) * last];
        for (j, o) in o.iter_mut().enumerate() {
            *o = f(a.data[oa + j * ia], b.data[ob + j * ib]);
        }
    });
}

/// out [out_shape] = x broadcast (numpy rules). Dtype-generic: also used on i32 indices.
pub(super) fn expand<T: Copy + Send + Sync>(
    x: &[T],
    x_shape: &[usize],
    out: &mut [T],
    out_shape: &[usize],
) -> Result<()> {
    let s = broadcast_strides(x_shape, out_shape).ok_or_else(|| {
        Error::shape(
            "expand",
            format!("shape {x_shape:?} does not broadcast to {out_shape:?}"),
        )
    })?;
    let last = out_shape.last().copied().unwrap_or(1);
    let inner = s.last().copied().unwrap_or(0);
    for_each_row(out_shape, [&s], |row, [off]| {
        let o = &mut out[row * last..(row + 1) * last];
        match inner {
            0 => o.fill(x[off]),
            1 => o.copy_from_slice(&x[off..off + last]),
            _ => o
                .iter_mut()
                .enumerate()
                .for_each(|(j, o)| *o = x[off + j * inner]),
        }
    });
    Ok(())
}

/// out [out_shape] = x [x_shape] summed over the dimensions `out_shape` broadcasts along (the
/// adjoint of expand). Accumulated in f64: these sums (bias gradients) run over many rows.
pub(super) fn sum_to(x: F32In, out: &mut [f32], out_shape: &[usize]) -> Result<()> {
    let s = broadcast_strides(out_shape, x.shape).ok_or_else(|| {
        Error::shape(
            "sum_to",
            format!("shape {out_shape:?} does not broadcast to {:?}", x.shape),
        )
    })?;
    if let Some(l) = trailing_block(out_shape, x.shape).filter(|&l| l > 0) {
        sum_leading_rows(x.data, l, out);
        return Ok(());
    }
    let mut acc = vec![0.0f64; out.len()];
    let last = x.shape.last().copied().unwrap_or(1);
    let inner = s.last().copied().unwrap_or(0);
    for_each_row(x.shape, [&s], |row, [off]| {
        let xr = &x.data[row * last..(row + 1) * last];
        if inner == 0 {
            acc[off] += xr.iter().map(|&v| v as f64).sum::<f64>();
        } else {
            for (j, &v) in xr.iter().enumerate() {
                acc[off + j * inner] += v as f64;
            }
        }
    });
    for (o, a) in out.iter_mut().zip(acc) {
        *o = a as f32;
    }
    Ok(())
}

/// out [L] = sum over rows of x [R, L], into f64 partials over fixed blocks of rows added in
/// order (so the result does not depend on the thread count or on work stealing).
fn sum_leading_rows(x: &[f32], l: usize, out: &mut [f32]) {
    let add_rows = |rows: &[f32]| {
        let mut acc = vec![0.0f64; l];
        add_rows_f64(rows, &mut acc);
        acc
    };
    let span = l * (16 * 1024 / l).max(1);
    let parts: Vec<Vec<f64>> = if x.len() >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1 {
        x.par_chunks(span).map(add_rows).collect()
    } else {
        x.chunks(span).map(add_rows).collect()
    };
    let mut total = vec![0.0f64; l];
    for p in parts {
        total.iter_mut().zip(p).for_each(|(t, p)| *t += p);
    }
    for (o, a) in out.iter_mut().zip(total) {
        *o = a as f32;
    }
}

simd_fn! {
    /// acc [L] += each row of x [R, L], in f64.
    fn add_rows_f64(x: &[f32], acc: &mut [f64]) {
        for r in x.chunks_exact(acc.len()) {
            for (a, &v) in acc.iter_mut().zip(r) {
                *a += v as f64;
            }
        }
    }
}
