//! The vector-Jacobian product of every op, in one table. `vjp` returns one optional gradient
//! per input (None: the input takes no gradient, e.g. integer labels).

use super::Ad;
use crate::error::{Error, Result};
use crate::ir::{BinaryOp, NodeId, Op, ReduceOp, Shape};

type Grads = Vec<Option<NodeId>>;

pub(crate) fn vjp(ad: &mut Ad<'_>, id: NodeId, dy: NodeId) -> Result<Grads> {
    let node = ad.node(id).clone();
    let x = |i: usize| node.inputs[i];
    let g = match &node.op {
        // y = f(x): dx = dy * f'(x), computed from x by the paired backward kernel.
        Op::Unary(u) => vec![Some(ad.emit(Op::UnaryBackward(*u), &[x(0), dy])?)],
        Op::Binary(b) => binary(ad, *b, id, x(0), x(1), dy)?,
        Op::Scale { factor } => vec![Some(ad.emit(Op::Scale { factor: *factor }, &[dy])?)],
        // Rounding is treated as the identity: the gradient goes back to the input's type.
        Op::Cast { .. } => {
            let to = ad.node(x(0)).dtype;
            vec![Some(ad.emit(Op::Cast { to }, &[dy])?)]
        }
        Op::Reshape { .. } => {
            let shape = ad.node(x(0)).shape.clone();
            vec![Some(ad.emit(Op::Reshape { shape }, &[dy])?)]
        }
        Op::Permute { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![Some(ad.emit(Op::Permute { perm: inv }, &[dy])?)]
        }
        Op::Slice { axis, start, .. } => {
            let len = ad.node(x(0)).shape.to_vec()[*axis];
            vec![Some(ad.emit(
                Op::SliceBackward {
                    axis: *axis,
                    start: *start,
                    len,
                },
                &[dy],
            )?)]
        }
        Op::SliceBackward { axis, start, .. } => {
            let n = ad.node(x(0)).shape.to_vec()[*axis];
            let slice = Op::Slice {
                axis: *axis,
                start: *start,
                end: start + n,
            };
            vec![Some(ad.emit(slice, &[dy])?)]
        }
        Op::Concat { axis } => {
            let mut out = Vec::new();
            let mut start = 0;
            for &i in &node.inputs {
                let n = ad.node(i).shape.to_vec()[*axis];
                out.push(Some(ad.emit(
                    Op::Slice {
                        axis: *axis,
                        start,
                        end: start + n,
                    },
                    &[dy],
                )?));
                start += n;
            }
            out
        }
        Op::Expand { .. } => vec![Some(sum_to(ad, dy, &ad.node(x(0)).shape.clone())?)],
        Op::SumTo { .. } => {
            let shape = ad.node(x(0)).shape.clone();
            vec![Some(ad.emit(Op::Expand { shape }, &[dy])?)]
        }
        Op::Reduce { op, axis, keepdim } => vec![Some(reduce(ad, *op, x(0), *axis, *keepdim, dy)?)],
        Op::MatMul { trans_a, trans_b } => matmul(ad, x(0), x(1), *trans_a, *trans_b, dy)?,
        // dx = y * (dy - sum(dy * y)): needs the output y, which is this node.
        Op::Softmax => vec![Some(ad.emit(Op::SoftmaxBackward, &[id, dy])?)],
        Op::LayerNorm { eps } => {
            let dx = ad.emit(Op::LayerNormBackward { eps: *eps }, &[x(0), x(1), dy])?;
            let dw = ad.emit(Op::LayerNormBackwardWeight { eps: *eps }, &[x(0), dy])?;
            let db = sum_to(ad, dy, &ad.node(x(2)).shape.clone())?;
            vec![Some(dx), Some(dw), Some(db)]
        }
        Op::Embedding => {
            let vocab = ad.node(x(0)).shape.to_vec()[0];
            vec![
                Some(ad.emit(Op::EmbeddingBackward { vocab }, &[x(1), dy])?),
                None,
            ]
        }
        Op::CausalAttention { heads } => {
            vec![Some(ad.emit(
                Op::CausalAttentionBackward { heads: *heads },
                &[x(0), dy],
            )?)]
        }
        Op::CrossEntropy => {
            vec![
                Some(ad.emit(Op::CrossEntropyBackward, &[x(0), x(1), dy])?),
                None,
            ]
        }
        // The mask is linear in its input and a pure function of (seed, step, index).
        Op::Dropout { p, seed } | Op::DropoutBackward { p, seed } => {
            vec![Some(
                ad.emit(Op::DropoutBackward { p: *p, seed: *seed }, &[dy])?,
            )]
        }
        // Tensor-parallel collectives come in conjugate pairs (Megatron's f and g): the
        // gradient of a replicated value read by every shard is the sum of their gradients.
        Op::TpCopy => vec![Some(ad.emit(Op::TpReduce, &[dy])?)],
        Op::TpReduce => vec![Some(ad.emit(Op::TpCopy, &[dy])?)],
        Op::TpGather { cut, index } => {
            let op = Op::TpShard {
                cut: *cut,
                index: *index,
            };
            vec![Some(ad.emit(op, &[dy])?)]
        }
        Op::TpShard { cut, index } => {
            let op = Op::TpGather {
                cut: *cut,
                index: *index,
            };
            vec![Some(ad.emit(op, &[dy])?)]
        }
        Op::TpGatherPartial { cut, index } => {
            let op = Op::TpReduceScatter {
                cut: *cut,
                index: *index,
            };
            vec![Some(ad.emit(op, &[dy])?)]
        }
        Op::TpReduceScatter { cut, index } => {
            let op = Op::TpGather {
                cut: *cut,
                index: *index,
            };
            vec![Some(ad.emit(op, &[dy])?)]
        }
        // The routing is piecewise constant: the kept probabilities pass their gradient.
        Op::MoeGate {
            top_k,
            capacity_factor,
            weighted: true,
        } => {
            let op = Op::MoeGateBackward {
                top_k: *top_k,
                capacity_factor: *capacity_factor,
            };
            vec![Some(ad.emit(op, &[x(0), dy])?)]
        }
        Op::MoeGate { .. } => vec![None],
        // Routing reads the gates only to place tokens (piecewise constant); the combine's
        // weighting is where the gates' gradient comes from.
        Op::MoeDispatch { tokens, .. } => {
            let op = Op::MoeDispatchBackward { tokens: *tokens };
            vec![Some(ad.emit(op, &[dy, x(1)])?), None]
        }
        Op::MoeCombine { tokens } => {
            let tokens = *tokens;
            let dbuf = Op::MoeCombineBackward { tokens };
            let dgates = Op::MoeCombineGates { tokens };
            vec![
                Some(ad.emit(dbuf, &[dy, x(0), x(1)])?),
                Some(ad.emit(dgates, &[dy, x(0), x(1)])?),
            ]
        }
        // Chunk j of device i went to device j's slot i: sending the gradients back is the
        // same exchange.
        Op::TpAllToAll => vec![Some(ad.emit(Op::TpAllToAll, &[dy])?)],
        // Only ever the shift of a log-sum-exp (see `Op::TpMax`): no gradient flows through it.
        Op::TpMax => vec![None],
        // Masked columns are constants: their gradient is zero.
        Op::ColumnMask { start, valid, .. } => {
            let mask = Op::ColumnMask {
                start: *start,
                valid: *valid,
                fill: 0.0,
            };
            vec![Some(ad.emit(mask, &[dy])?)]
        }
        Op::VocabOneHot { .. } => vec![None],
        // Metrics are piecewise constant: forward only.
        Op::Argmax | Op::BidIndex => vec![None],
        Op::Equal | Op::ArgmaxBid { .. } => vec![None, None],
        Op::Input { .. } | Op::Parameter { .. } | Op::Fill { .. } | Op::LossScale => vec![],
        Op::UnaryBackward(_)
        | Op::MaxBackward { .. }
        | Op::SoftmaxBackward
        | Op::LayerNormBackward { .. }
        | Op::LayerNormBackwardWeight { .. }
        | Op::EmbeddingBackward { .. }
        | Op::CausalAttentionBackward { .. }
        | Op::CrossEntropyBackward
        | Op::MoeGateBackward { .. }
        | Op::MoeDispatchBackward { .. }
        | Op::MoeCombineBackward { .. }
        | Op::MoeCombineGates { .. } => {
            return Err(Error::unsupported(
                format!("second-order gradient of {}", node.op.name()),
                "weft differentiates training graphs once",
            ));
        }
    };
    Ok(g)
}

/// Sum a broadcast gradient back to an operand's shape (no-op when equal).
fn sum_to(ad: &mut Ad<'_>, g: NodeId, shape: &Shape) -> Result<NodeId> {
    if &ad.node(g).shape == shape {
        return Ok(g);
    }
    ad.emit(
        Op::SumTo {
            shape: shape.clone(),
        },
        &[g],
    )
}

fn binary(
    ad: &mut Ad<'_>,
    b: BinaryOp,
    y: NodeId,
    a: NodeId,
    c: NodeId,
    dy: NodeId,
) -> Result<Grads> {
    let (sa, sc) = (ad.node(a).shape.clone(), ad.node(c).shape.clone());
    let (ga, gc) = match b {
        BinaryOp::Add => (dy, dy),
        BinaryOp::Sub => (dy, ad.emit(Op::Scale { factor: -1.0 }, &[dy])?),
        BinaryOp::Mul => (
            ad.emit(Op::Binary(BinaryOp::Mul), &[dy, c])?,
            ad.emit(Op::Binary(BinaryOp::Mul), &[dy, a])?,
        ),
        // y = a / c: da = dy / c; dc = -dy * y / c.
        BinaryOp::Div => {
            let ga = ad.emit(Op::Binary(BinaryOp::Div), &[dy, c])?;
            let t = ad.emit(Op::Binary(BinaryOp::Mul), &[ga, y])?;
            (ga, ad.emit(Op::Scale { factor: -1.0 }, &[t])?)
        }
    };
    Ok(vec![Some(sum_to(ad, ga, &sa)?), Some(sum_to(ad, gc, &sc)?)])
}

fn reduce(
    ad: &mut Ad<'_>,
    r: ReduceOp,
    x: NodeId,
    axis: usize,
    keep: bool,
    dy: NodeId,
) -> Result<NodeId> {
    let shape = ad.node(x).shape.clone();
    if r == ReduceOp::Max {
        return ad.emit(
            Op::MaxBackward {
                axis,
                keepdim: keep,
            },
            &[x, dy],
        );
    }
    let mut kept = shape.clone();
    kept.0[axis] = crate::ir::Dim::Fixed(1);
    let dy = if keep {
        dy
    } else {
        ad.emit(Op::Reshape { shape: kept }, &[dy])?
    };
    let g = ad.emit(
        Op::Expand {
            shape: shape.clone(),
        },
        &[dy],
    )?;
    if r == ReduceOp::Mean {
        let n = shape.0[axis].fixed().ok_or_else(|| {
            Error::unsupported(
                "mean over the batch dimension inside the model",
                format!("reduce over a fixed axis of {shape}"),
            )
        })?;
        return ad.emit(
            Op::Scale {
                factor: 1.0 / n as f32,
            },
            &[g],
        );
    }
    Ok(g)
}

/// Y = A'B' with A' = A or A^T, B' = B or B^T. dA' = dY B'^T and dB' = A'^T dY, transposed
/// back when the operand was transposed; a rank-2 operand shared across the other's batch gets
/// its batch summed, by folding the batch into rows when the layout allows (no per-batch temp).
fn matmul(ad: &mut Ad<'_>, a: NodeId, b: NodeId, ta: bool, tb: bool, dy: NodeId) -> Result<Grads> {
    let mm =
        |ad: &mut Ad<'_>, l, r, trans_a, trans_b| ad.emit(Op::MatMul { trans_a, trans_b }, &[l, r]);
    let (ra, rb) = (ad.node(a).shape.rank(), ad.node(b).shape.rank());
    let fold_b = rb == 2 && ra > 2 && !ta;
    let full = if ta {
        mm(ad, b, dy, tb, true)?
    } else {
        mm(ad, dy, b, false, !tb)?
    };
    let da = sum_to(ad, full, &ad.node(a).shape.clone())?;
    let db = if fold_b {
        let k = ad.node(a).shape.to_vec()[ra - 1];
        let n = ad.node(dy).shape.to_vec()[ra - 1];
        let a2 = flatten_rows(ad, a, k)?;
        let dy2 = flatten_rows(ad, dy, n)?;
        if tb {
            mm(ad, dy2, a2, true, false)?
        } else {
            mm(ad, a2, dy2, true, false)?
        }
    } else {
        let full = if tb {
            mm(ad, dy, a, true, ta)?
        } else {
            mm(ad, a, dy, !ta, false)?
        };
        sum_to(ad, full, &ad.node(b).shape.clone())?
    };
    Ok(vec![Some(da), Some(db)])
}

/// [..., cols] -> [rows, cols] (rows absorb the batch).
fn flatten_rows(ad: &mut Ad<'_>, x: NodeId, cols: usize) -> Result<NodeId> {
    let s = &ad.node(x).shape;
    let rows = match s.numel() {
        n if n.batch_power == 0 => crate::ir::Dim::Fixed(n.fixed / cols),
        n => crate::ir::Dim::Batch(n.fixed / cols),
    };
    let shape = Shape(vec![rows, crate::ir::Dim::Fixed(cols)]);
    ad.emit(Op::Reshape { shape }, &[x])
}
