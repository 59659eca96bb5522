//! Structural tests of the transform, and what it refuses; the numerical gradient checks of
//! every op are `gradcheck.rs`'s cases, which every backend runs against finite differences.

use super::differentiate;
use crate::ir::{BinaryOp, DType, Dim, GraphBuilder, Init, Op, Phase, ReduceOp, Shape, UnaryOp};

#[test]
fn backward_nodes_follow_their_forward_taskgraph_and_phase() {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(3)]), DType::F32)
        .unwrap();
    let w = b.parameter("w", Shape::fixed(&[3, 2]), Init::Ones).unwrap();
    let y = b
        .op(
            Op::MatMul {
                trans_a: false,
                trans_b: false,
            },
            &[x, w],
        )
        .unwrap();
    let r = b.op(Op::Unary(UnaryOp::Relu), &[y]).unwrap();
    let s = b
        .op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axis: 1,
                keepdim: false,
            },
            &[r],
        )
        .unwrap();
    let l = b.op(
        Op::Reduce {
            op: ReduceOp::Mean,
            axis: 0,
            keepdim: false,
        },
        &[s],
    );
    // Mean over the symbolic batch is refused only at differentiation (its 1/B is unknown).
    let g = b.finish(l.unwrap()).unwrap();
    let err = differentiate(g).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mean over the batch dimension inside the model is not yet supported: reduce over a fixed axis of [B]"
    );
}

#[test]
fn shared_parameter_gradients_are_summed() {
    let mut b = GraphBuilder::new();
    let w = b.parameter("w", Shape::fixed(&[2]), Init::Ones).unwrap();
    let y = b.op(Op::Binary(BinaryOp::Mul), &[w, w]).unwrap();
    let s = b
        .op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axis: 0,
                keepdim: false,
            },
            &[y],
        )
        .unwrap();
    let g = differentiate(b.finish(s).unwrap()).unwrap();
    assert_eq!(g.grads.len(), 1);
    let (_, grad) = g.grads[0];
    assert_eq!(g.node(grad).op, Op::Binary(BinaryOp::Add));
    assert!(
        g.nodes[s.index() + 1..]
            .iter()
            .all(|n| n.phase == Phase::Backward)
    );
}

#[test]
fn second_order_gradients_are_refused_by_name() {
    let mut b = GraphBuilder::new();
    let x = b.parameter("x", Shape::fixed(&[3]), Init::Ones).unwrap();
    let y = b.op(Op::UnaryBackward(UnaryOp::Relu), &[x, x]).unwrap();
    let s = b
        .op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axis: 0,
                keepdim: false,
            },
            &[y],
        )
        .unwrap();
    let err = differentiate(b.finish(s).unwrap());
    assert_eq!(
        err.unwrap_err().to_string(),
        "second-order gradient of relu_backward is not yet supported: weft differentiates training graphs once"
    );
}
