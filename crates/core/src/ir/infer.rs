//! Output type inference, one arm per op: the single source of shape rules. The builder calls it
//! to type new nodes and `verify()` calls it again to check that passes kept types consistent.

use super::op::{Op, ReduceOp};
use super::shape::{Dim, Shape};
use crate::error::{Error, Result};
use crate::tensor::DType;

mod moe;
pub use moe::moe_capacity;

/// An input's type as seen by inference.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorType {
    pub shape: Shape,
    pub dtype: DType,
}

fn err<T>(op: &Op, message: String) -> Result<T> {
    Err(Error::shape(op.name(), message))
}

fn want_dtype(op: &Op, what: &str, t: &TensorType, dtype: DType) -> Result<()> {
    if t.dtype != dtype {
        return Err(Error::DType {
            what: format!("{} {what}", op.name()),
            expected: dtype.to_string(),
            got: t.dtype.to_string(),
        });
    }
    Ok(())
}

/// A float input (f32, or a 16-bit float under mixed precision); its type.
fn want_float(op: &Op, what: &str, t: &TensorType) -> Result<DType> {
    if !t.dtype.is_float() {
        return want_dtype(op, what, t, DType::F32).map(|()| t.dtype);
    }
    Ok(t.dtype)
}

/// Two float inputs of one type (mixed precision casts them to agree); that type.
fn same_float(op: &Op, a: &TensorType, b: &TensorType) -> Result<DType> {
    let dtype = want_float(op, "lhs", a)?;
    want_dtype(op, "rhs", b, dtype)?;
    Ok(dtype)
}

fn last_dim(op: &Op, t: &TensorType) -> Result<usize> {
    match t.shape.dims().last() {
        Some(Dim::Fixed(n)) => Ok(*n),
        _ => err(
            op,
            format!("needs a fixed last dimension, got shape {}", t.shape),
        ),
    }
}

fn same_shape(op: &Op, a: &TensorType, b: &TensorType) -> Result<()> {
    if a.shape != b.shape {
        return err(
            op,
            format!("shapes {} and {} must be equal", a.shape, b.shape),
        );
    }
    Ok(())
}

fn f32_of(shape: Shape) -> TensorType {
    TensorType {
        shape,
        dtype: DType::F32,
    }
}

/// Infer the output type of `op` applied to `ins`.
pub fn infer(op: &Op, ins: &[TensorType]) -> Result<TensorType> {
    if let Some(n) = op.arity() {
        if ins.len() != n {
            return err(op, format!("takes {n} inputs, got {}", ins.len()));
        }
    } else if ins.is_empty() {
        return err(op, "takes at least one input".into());
    }
    match op {
        Op::Input { shape, dtype, .. } => Ok(TensorType {
            shape: shape.clone(),
            dtype: *dtype,
        }),
        Op::LossScale => Ok(f32_of(Shape::default())),
        Op::Parameter { shape, .. } | Op::Fill { shape, .. } => {
            if !shape.is_concrete() {
                return err(op, format!("shape {shape} must not depend on the batch"));
            }
            Ok(f32_of(shape.clone()))
        }
        Op::Unary(_) | Op::Scale { .. } | Op::Dropout { .. } => {
            want_float(op, "input", &ins[0])?;
            Ok(ins[0].clone())
        }
        Op::Softmax => {
            want_dtype(op, "input", &ins[0], DType::F32)?;
            Ok(ins[0].clone())
        }
        Op::Cast { to } => {
            want_float(op, "input", &ins[0])?;
            if !to.is_float() {
                return err(op, format!("casts to float types only, not {to}"));
            }
            Ok(TensorType {
                shape: ins[0].shape.clone(),
                dtype: *to,
            })
        }
        Op::DropoutBackward { .. } | Op::TpCopy | Op::TpReduce | Op::TpMax => Ok(ins[0].clone()),
        Op::MoeGate { top_k, .. } | Op::MoeGateBackward { top_k, .. } => {
            want_dtype(op, "probs", &ins[0], DType::F32)?;
            let experts = last_dim(op, &ins[0])?;
            if ins[0].shape.rank() != 2 || *top_k == 0 || *top_k > experts {
                return err(
                    op,
                    format!(
                        "probs must be [N, E] with 1 <= top_k <= E; got {} with top_k {top_k}",
                        ins[0].shape
                    ),
                );
            }
            if ins.len() == 2 {
                same_shape(op, &ins[0], &ins[1])?;
            }
            Ok(ins[0].clone())
        }
        Op::MoeDispatch { .. }
        | Op::MoeDispatchBackward { .. }
        | Op::MoeCombine { .. }
        | Op::MoeCombineBackward { .. }
        | Op::MoeCombineGates { .. }
        | Op::TpAllToAll => moe::infer_moe(op, ins),
        Op::ColumnMask { .. } => {
            want_dtype(op, "input", &ins[0], DType::F32)?;
            last_dim(op, &ins[0])?;
            Ok(ins[0].clone())
        }
        Op::VocabOneHot { width, .. } => {
            want_dtype(op, "labels", &ins[0], DType::I32)?;
            let mut dims = ins[0].shape.0.clone();
            dims.push(Dim::Fixed(*width));
            Ok(f32_of(Shape(dims)))
        }
        Op::Argmax | Op::ArgmaxBid { .. } => infer_argmax(op, ins),
        Op::Equal => {
            if ins[0].dtype != DType::I32 {
                want_float(op, "lhs", &ins[0])?;
            }
            want_dtype(op, "rhs", &ins[1], ins[0].dtype)?;
            same_shape(op, &ins[0], &ins[1])?;
            Ok(f32_of(ins[0].shape.clone()))
        }
        Op::BidIndex => {
            want_dtype(op, "bids", &ins[0], DType::F32)?;
            Ok(TensorType {
                shape: ins[0].shape.clone(),
                dtype: DType::I32,
            })
        }
        Op::TpGather { cut, index }
        | Op::TpShard { cut, index }
        | Op::TpGatherPartial { cut, index }
        | Op::TpReduceScatter { cut, index }
            if *index >= cut.parts =>
        {
            err(
                op,
                format!("shard index {index} out of {} parts", cut.parts),
            )
        }
        Op::TpGather { cut, .. } | Op::TpGatherPartial { cut, .. } => {
            infer_cut(op, &ins[0], *cut, true)
        }
        Op::TpShard { cut, .. } | Op::TpReduceScatter { cut, .. } => {
            infer_cut(op, &ins[0], *cut, false)
        }
        Op::UnaryBackward(_) | Op::SoftmaxBackward => {
            same_shape(op, &ins[0], &ins[1])?;
            Ok(ins[0].clone())
        }
        Op::Binary(_) => {
            let dtype = same_float(op, &ins[0], &ins[1])?;
            let shape = Shape::broadcast(op.name(), &ins[0].shape, &ins[1].shape)?;
            Ok(TensorType { shape, dtype })
        }
        Op::Reshape { shape } => infer_reshape(op, &ins[0], shape),
        Op::Permute { perm } => infer_permute(op, &ins[0], perm),
        Op::Slice { axis, start, end } => infer_slice(op, &ins[0], *axis, *start, *end),
        Op::SliceBackward { axis, start, len } => {
            let mut dims = ins[0].shape.0.clone();
            let Some(Dim::Fixed(n)) = dims.get(*axis).copied() else {
                return err(
                    op,
                    format!("axis {axis} must be a fixed dim of {}", ins[0].shape),
                );
            };
            if start + n > *len {
                return err(
                    op,
                    format!("slice {start}..{} exceeds length {len}", start + n),
                );
            }
            dims[*axis] = Dim::Fixed(*len);
            Ok(TensorType {
                shape: Shape(dims),
                dtype: ins[0].dtype,
            })
        }
        Op::Concat { axis } => infer_concat(op, ins, *axis),
        Op::Expand { shape } => {
            let b = Shape::broadcast(op.name(), &ins[0].shape, shape)?;
            if &b != shape {
                return err(op, format!("cannot expand {} to {shape}", ins[0].shape));
            }
            Ok(TensorType {
                shape: shape.clone(),
                dtype: ins[0].dtype,
            })
        }
        Op::SumTo { shape } => {
            let b = Shape::broadcast(op.name(), &ins[0].shape, shape)?;
            if b != ins[0].shape {
                return err(op, format!("cannot sum {} down to {shape}", ins[0].shape));
            }
            Ok(TensorType {
                shape: shape.clone(),
                dtype: ins[0].dtype,
            })
        }
        Op::Reduce {
            op: r,
            axis,
            keepdim,
        } => infer_reduce(op, &ins[0], *r, *axis, *keepdim),
        Op::MaxBackward { axis, keepdim } => {
            let want = infer_reduce(op, &ins[0], ReduceOp::Max, *axis, *keepdim)?;
            if want.shape != ins[1].shape {
                return err(
                    op,
                    format!("dy shape {} must be {}", ins[1].shape, want.shape),
                );
            }
            Ok(ins[0].clone())
        }
        Op::MatMul { trans_a, trans_b } => infer_matmul(op, &ins[0], &ins[1], *trans_a, *trans_b),
        Op::LayerNorm { .. } => {
            let c = last_dim(op, &ins[0])?;
            for (what, t) in [("weight", &ins[1]), ("bias", &ins[2])] {
                if t.shape != Shape::fixed(&[c]) {
                    return err(op, format!("{what} shape {} must be [{c}]", t.shape));
                }
            }
            Ok(ins[0].clone())
        }
        Op::LayerNormBackward { .. } => {
            same_shape(op, &ins[0], &ins[2])?;
            Ok(ins[0].clone())
        }
        Op::LayerNormBackwardWeight { .. } => {
            same_shape(op, &ins[0], &ins[1])?;
            Ok(f32_of(Shape::fixed(&[last_dim(op, &ins[0])?])))
        }
        Op::Embedding => infer_embedding(op, &ins[0], &ins[1]),
        Op::EmbeddingBackward { vocab } => {
            want_dtype(op, "indices", &ins[0], DType::I32)?;
            let c = last_dim(op, &ins[1])?;
            Ok(f32_of(Shape::fixed(&[*vocab, c])))
        }
        Op::CausalAttention { heads } => infer_attention(op, &ins[0], *heads),
        Op::CausalAttentionBackward { heads } => {
            let out = infer_attention(op, &ins[0], *heads)?;
            same_shape(op, &out, &ins[1])?;
            Ok(ins[0].clone())
        }
        Op::CrossEntropy => infer_cross_entropy(op, &ins[0], &ins[1]),
        Op::CrossEntropyBackward => {
            let loss = infer_cross_entropy(op, &ins[0], &ins[1])?;
            same_shape(op, &loss, &ins[2])?;
            Ok(ins[0].clone())
        }
    }
}

fn infer_reshape(op: &Op, x: &TensorType, shape: &Shape) -> Result<TensorType> {
    if x.shape.numel() != shape.numel() {
        return err(
            op,
            format!(
                "cannot reshape {} into {shape}: element counts differ",
                x.shape
            ),
        );
    }
    Ok(TensorType {
        shape: shape.clone(),
        dtype: x.dtype,
    })
}

fn infer_permute(op: &Op, x: &TensorType, perm: &[usize]) -> Result<TensorType> {
    let r = x.shape.rank();
    let mut seen = vec![false; r];
    for &p in perm {
        if p >= r || std::mem::replace(&mut seen[p], true) {
            return err(
                op,
                format!("perm {perm:?} is not a permutation of rank {r}"),
            );
        }
    }
    if perm.len() != r {
        return err(
            op,
            format!("perm {perm:?} is not a permutation of rank {r}"),
        );
    }
    let dims = perm.iter().map(|&p| x.shape.0[p]).collect();
    Ok(TensorType {
        shape: Shape(dims),
        dtype: x.dtype,
    })
}

fn infer_slice(
    op: &Op,
    x: &TensorType,
    axis: usize,
    start: usize,
    end: usize,
) -> Result<TensorType> {
    let mut dims = x.shape.0.clone();
    let Some(Dim::Fixed(n)) = dims.get(axis).copied() else {
        return err(
            op,
            format!("axis {axis} must be a fixed dimension of {}", x.shape),
        );
    };
    if start >= end || end > n {
        return err(
            op,
            format!(
                "range {start}..{end} is invalid for axis {axis} of {}",
                x.shape
            ),
        );
    }
    dims[axis] = Dim::Fixed(end - start);
    Ok(TensorType {
        shape: Shape(dims),
        dtype: x.dtype,
    })
}

fn infer_concat(op: &Op, ins: &[TensorType], axis: usize) -> Result<TensorType> {
    let first = &ins[0];
    if axis >= first.shape.rank() {
        return err(op, format!("axis {axis} out of range for {}", first.shape));
    }
    let mut total = first.shape.0[axis];
    for t in &ins[1..] {
        let ok = t.dtype == first.dtype
            && t.shape.rank() == first.shape.rank()
            && (0..t.shape.rank()).all(|i| i == axis || t.shape.0[i] == first.shape.0[i]);
        if !ok {
            return err(
                op,
                format!(
                    "cannot concat {} and {} on axis {axis}",
                    first.shape, t.shape
                ),
            );
        }
        total = match (total, t.shape.0[axis]) {
            (Dim::Fixed(a), Dim::Fixed(b)) => Dim::Fixed(a + b),
            (Dim::Batch(a), Dim::Batch(b)) => Dim::Batch(a + b),
            _ => {
                return err(
                    op,
                    format!("cannot mix batch and fixed dims on axis {axis}"),
                );
            }
        };
    }
    let mut dims = first.shape.0.clone();
    dims[axis] = total;
    Ok(TensorType {
        shape: Shape(dims),
        dtype: first.dtype,
    })
}

fn infer_reduce(
    op: &Op,
    x: &TensorType,
    r: ReduceOp,
    axis: usize,
    keep: bool,
) -> Result<TensorType> {
    want_dtype(op, "input", x, DType::F32)?;
    if axis >= x.shape.rank() {
        return err(op, format!("axis {axis} out of range for {}", x.shape));
    }
    let _ = r;
    let mut dims = x.shape.0.clone();
    if keep {
        dims[axis] = Dim::Fixed(1);
    } else {
        dims.remove(axis);
    }
    Ok(f32_of(Shape(dims)))
}

fn infer_matmul(op: &Op, a: &TensorType, b: &TensorType, ta: bool, tb: bool) -> Result<TensorType> {
    let dtype = same_float(op, a, b)?;
    let (ra, rb) = (a.shape.rank(), b.shape.rank());
    if ra < 2 || rb < 2 {
        return err(
            op,
            format!("needs rank >= 2 operands, got {} and {}", a.shape, b.shape),
        );
    }
    let (ad, bd) = (&a.shape.0, &b.shape.0);
    let (m, ka) = if ta {
        (ad[ra - 1], ad[ra - 2])
    } else {
        (ad[ra - 2], ad[ra - 1])
    };
    let (kb, n) = if tb {
        (bd[rb - 1], bd[rb - 2])
    } else {
        (bd[rb - 2], bd[rb - 1])
    };
    if ka != kb {
        return err(
            op,
            format!(
                "inner dimensions differ: {} x {} ({ka} vs {kb})",
                a.shape, b.shape
            ),
        );
    }
    let batch = match (ra, rb) {
        (_, 2) => ad[..ra - 2].to_vec(),
        (2, _) => bd[..rb - 2].to_vec(),
        _ if ad[..ra - 2] == bd[..rb - 2] => ad[..ra - 2].to_vec(),
        _ => {
            return err(
                op,
                format!("batch dimensions differ: {} x {}", a.shape, b.shape),
            );
        }
    };
    let mut dims = batch;
    dims.extend([m, n]);
    Ok(TensorType {
        shape: Shape(dims),
        dtype,
    })
}

fn infer_embedding(op: &Op, table: &TensorType, idx: &TensorType) -> Result<TensorType> {
    want_dtype(op, "table", table, DType::F32)?;
    want_dtype(op, "indices", idx, DType::I32)?;
    if table.shape.rank() != 2 || !table.shape.is_concrete() {
        return err(
            op,
            format!("table must be a fixed [V, C] matrix, got {}", table.shape),
        );
    }
    let mut dims = idx.shape.0.clone();
    dims.push(table.shape.0[1]);
    Ok(f32_of(Shape(dims)))
}

fn infer_attention(op: &Op, qkv: &TensorType, heads: usize) -> Result<TensorType> {
    let dtype = want_float(op, "qkv", qkv)?;
    let d = &qkv.shape.0;
    let (Some(Dim::Fixed(_)), Some(Dim::Fixed(c3))) = (d.get(1), d.get(2)) else {
        return err(
            op,
            format!(
                "qkv must be [B, T, 3C] with fixed T and C, got {}",
                qkv.shape
            ),
        );
    };
    if d.len() != 3 || c3 % 3 != 0 || heads == 0 || (c3 / 3) % heads != 0 {
        return err(
            op,
            format!(
                "qkv {} must be [B, T, 3C] with C divisible by heads={heads}",
                qkv.shape
            ),
        );
    }
    let mut dims = d.clone();
    dims[2] = Dim::Fixed(c3 / 3);
    Ok(TensorType {
        shape: Shape(dims),
        dtype,
    })
}

fn infer_cross_entropy(op: &Op, logits: &TensorType, labels: &TensorType) -> Result<TensorType> {
    want_float(op, "logits", logits)?;
    want_dtype(op, "labels", labels, DType::I32)?;
    if logits.shape.rank() != 2
        || labels.shape.rank() != 1
        || logits.shape.0[0] != labels.shape.0[0]
    {
        return err(
            op,
            format!(
                "needs logits [N, V] and labels [N], got {} and {}",
                logits.shape, labels.shape
            ),
        );
    }
    Ok(f32_of(labels.shape.clone()))
}

/// The type of a tensor-parallel gather (`whole`: the shard's axis times `parts`) or shard (the
/// axis divided by `parts`, which must divide into `groups x parts` equal chunks).
fn infer_cut(op: &Op, t: &TensorType, cut: crate::ir::Cut, whole: bool) -> Result<TensorType> {
    let mut dims = t.shape.0.clone();
    let Some(Dim::Fixed(n)) = dims.get(cut.axis).copied() else {
        return err(
            op,
            format!("axis {} must be a fixed dim of {}", cut.axis, t.shape),
        );
    };
    let step = if whole {
        cut.groups
    } else {
        cut.groups * cut.parts
    };
    if cut.parts == 0 || step == 0 || !n.is_multiple_of(step) {
        return err(
            op,
            format!("axis {} of {} does not cut as {cut}", cut.axis, t.shape),
        );
    }
    dims[cut.axis] = Dim::Fixed(if whole { n * cut.parts } else { n / cut.parts });
    Ok(TensorType {
        shape: Shape(dims),
        dtype: t.dtype,
    })
}

/// `Argmax` (x [.., V] -> i32 [..]) and `ArgmaxBid` ((x [.., W], m [..]) -> f32 [..]).
fn infer_argmax(op: &Op, ins: &[TensorType]) -> Result<TensorType> {
    want_float(op, "input", &ins[0])?;
    let width = last_dim(op, &ins[0])?;
    let dims = &ins[0].shape.0;
    let rows = Shape(dims[..dims.len() - 1].to_vec());
    match op {
        Op::ArgmaxBid { start } => {
            want_dtype(op, "max", &ins[1], DType::F32)?;
            if ins[1].shape != rows {
                return err(
                    op,
                    format!(
                        "max must be {rows} for input {}, got {}",
                        ins[0].shape, ins[1].shape
                    ),
                );
            }
            // Bids are f32: every global index must be exact.
            if start + width > 1 << 24 {
                return err(op, format!("columns up to {} exceed 2^24", start + width));
            }
            Ok(f32_of(rows))
        }
        _ => Ok(TensorType {
            shape: rows,
            dtype: DType::I32,
        }),
    }
}
