//! Types of the mixture-of-experts routing ops (`MoeDispatch`, `MoeCombine`,
//! `MoeCombineGates`) and the all-to-all that carries their buffers between devices.

use super::{TensorType, err, f32_of, want_dtype};
use crate::error::Result;
use crate::ir::{Dim, Op, Shape, TokenSlice};

/// Tokens one expert takes from N: ceil(capacity_factor * N * top_k / E), at least 1 (GShard).
/// `MoeGate` routes with it; the dispatch buffer has min(N, it) slots per expert.
pub fn moe_capacity(tokens: usize, experts: usize, top_k: usize, factor: f32) -> usize {
    let c = (factor as f64 * tokens as f64 * top_k as f64 / experts as f64).ceil();
    (c as usize).max(1)
}

/// Slots per expert of a dispatch over `tokens`: the capacity, never more than the tokens. A
/// symbolic token count gives the bound N (the batch is resolved before training, and then
/// the slot count is exact).
fn slots(tokens: Dim, experts: usize, top_k: usize, factor: f32) -> Dim {
    match tokens {
        Dim::Fixed(n) => Dim::Fixed(moe_capacity(n, experts, top_k, factor).min(n)),
        b @ Dim::Batch(_) => b,
    }
}

/// gates [N, E] (f32); returns (N, E).
fn gates_of(op: &Op, gates: &TensorType) -> Result<(Dim, usize)> {
    want_dtype(op, "gates", gates, crate::ir::DType::F32)?;
    match gates.shape.dims() {
        [n, Dim::Fixed(e)] => Ok((*n, *e)),
        _ => err(op, format!("gates must be [N, E], got {}", gates.shape)),
    }
}

/// The rows this device holds of N: N itself, or N / parts (N fixed and divisible).
fn local_rows(op: &Op, n: Dim, tokens: TokenSlice) -> Result<Dim> {
    if tokens.parts == 0 || tokens.index >= tokens.parts {
        return err(op, format!("token slice {tokens} is out of range"));
    }
    match (n, tokens.parts) {
        (n, 1) => Ok(n),
        (Dim::Fixed(n), p) if n.is_multiple_of(p) => Ok(Dim::Fixed(n / p)),
        (n, p) => err(op, format!("{n} tokens do not divide into {p} parts")),
    }
}

/// rows [M, C] of this device, checked against the slice of N; returns C.
fn token_rows(op: &Op, what: &str, x: &TensorType, n: Dim, tokens: TokenSlice) -> Result<usize> {
    want_dtype(op, what, x, crate::ir::DType::F32)?;
    let m = local_rows(op, n, tokens)?;
    match x.shape.dims() {
        [r, Dim::Fixed(c)] if *r == m => Ok(*c),
        _ => err(
            op,
            format!(
                "{what} must be [{m}, C] ({tokens} of {n} tokens), got {}",
                x.shape
            ),
        ),
    }
}

/// buf [E, S, C] for gates of E experts; returns (S, C).
fn buffer(op: &Op, buf: &TensorType, e: usize) -> Result<(Dim, usize)> {
    want_dtype(op, "buffer", buf, crate::ir::DType::F32)?;
    match buf.shape.dims() {
        [Dim::Fixed(be), s, Dim::Fixed(c)] if *be == e => Ok((*s, *c)),
        _ => err(
            op,
            format!(
                "buffer must be [{e}, S, C] (one row of slots per expert), got {}",
                buf.shape
            ),
        ),
    }
}

pub(super) fn infer_moe(op: &Op, ins: &[TensorType]) -> Result<TensorType> {
    match *op {
        Op::MoeDispatch {
            top_k,
            capacity_factor,
            tokens,
            ..
        } => {
            let (n, e) = gates_of(op, &ins[1])?;
            if top_k == 0 || top_k > e || capacity_factor.is_nan() || capacity_factor <= 0.0 {
                return err(
                    op,
                    format!(
                        "needs 1 <= top_k <= {e} experts and capacity_factor > 0, got top_k \
                         {top_k}, capacity_factor {capacity_factor}"
                    ),
                );
            }
            let c = token_rows(op, "x", &ins[0], n, tokens)?;
            let s = slots(n, e, top_k, capacity_factor);
            Ok(f32_of(Shape(vec![Dim::Fixed(e), s, Dim::Fixed(c)])))
        }
        Op::MoeDispatchBackward { tokens } | Op::MoeCombine { tokens } => {
            let (n, e) = gates_of(op, &ins[1])?;
            let (_, c) = buffer(op, &ins[0], e)?;
            let m = local_rows(op, n, tokens)?;
            Ok(f32_of(Shape(vec![m, Dim::Fixed(c)])))
        }
        Op::MoeCombineBackward { tokens } | Op::MoeCombineGates { tokens } => {
            let (n, e) = gates_of(op, &ins[2])?;
            let (_, c) = buffer(op, &ins[1], e)?;
            if token_rows(op, "dy", &ins[0], n, tokens)? != c {
                return err(
                    op,
                    format!(
                        "dy {} and buffer {} differ in width",
                        ins[0].shape, ins[1].shape
                    ),
                );
            }
            match op {
                Op::MoeCombineBackward { .. } => Ok(ins[1].clone()),
                _ => Ok(ins[2].clone()),
            }
        }
        Op::TpAllToAll => {
            want_dtype(op, "input", &ins[0], crate::ir::DType::F32)?;
            if ins[0].shape.rank() == 0 {
                return err(op, "needs an axis 0 to exchange".into());
            }
            Ok(ins[0].clone())
        }
        _ => err(op, "is not a mixture-of-experts op".into()),
    }
}
