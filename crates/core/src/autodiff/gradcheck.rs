//! Finite-difference gradient checks: one per differentiable op (and per interesting variant),
//! each comparing autodiff's gradient on the CPU backend with central differences of the loss.
//! Backward ops have no gradient of their own (weft differentiates once); each is checked here
//! through the forward op that emits it.

use crate::error::Result;
use crate::exec::cpu::CpuBackend;
use crate::exec::{Executor, HostData, KernelCtx, ProgramKind};
use crate::ir::{BinaryOp, DType, GraphBuilder, Init, NodeId, Op, ReduceOp, Shape, UnaryOp};
use crate::rng;
use std::collections::BTreeMap;

fn param(b: &mut GraphBuilder, name: &str, dims: &[usize], low: f32, high: f32) -> NodeId {
    b.parameter(name, Shape::fixed(dims), Init::Uniform { low, high })
        .unwrap()
}

fn labels(
    b: &mut GraphBuilder,
    name: &str,
    values: &[i32],
    inputs: &mut BTreeMap<String, HostData>,
) -> NodeId {
    inputs.insert(name.into(), HostData::I32(values.to_vec()));
    b.input(name, Shape::fixed(&[values.len()]), DType::I32)
        .unwrap()
}

/// Build `out = f(params)`, take loss = sum(out * r) for a fixed random r, and compare every
/// parameter's gradient with central differences.
fn check(
    name: &str,
    inputs: BTreeMap<String, HostData>,
    f: impl Fn(&mut GraphBuilder, &mut BTreeMap<String, HostData>) -> NodeId,
) {
    let mut inputs = inputs;
    let mut b = GraphBuilder::new();
    let out = f(&mut b, &mut inputs);
    let shape = b.node(out).unwrap().shape.clone();
    let n = shape.size();
    let r: Vec<f32> = (0..n)
        .map(|i| rng::uniform(11, 5, i as u64) * 2.0 - 1.0)
        .collect();
    inputs.insert("__r".into(), HostData::F32(r));
    let rin = b.input("__r", shape, DType::F32).unwrap();
    let prod = b.op(Op::Binary(BinaryOp::Mul), &[out, rin]).unwrap();
    let flat_shape = b.reshape_dims(prod, &[-1]).unwrap();
    let flat = b.op(Op::Reshape { shape: flat_shape }, &[prod]).unwrap();
    let loss = b
        .op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axis: 0,
                keepdim: false,
            },
            &[flat],
        )
        .unwrap();
    let g = super::differentiate(b.finish(loss).unwrap()).unwrap();
    let stages = crate::passes::StageMap::single(&g);
    let mut ex = Executor::new(CpuBackend::new(1), g, &stages, 0, 7).unwrap();
    let ctx = KernelCtx {
        step: 3,
        ..Default::default()
    };
    ex.run(ProgramKind::Forward, 0, &inputs, &ctx, None)
        .unwrap();
    ex.run(ProgramKind::Backward, 0, &inputs, &ctx, None)
        .unwrap();
    ex.take_value(0, loss).unwrap();
    for (pname, dims) in ex.parameter_shapes() {
        let grad = ex
            .read_grad(&pname)
            .unwrap()
            .expect("every parameter reaches the loss");
        let grad = grad.as_f32().unwrap().to_vec();
        let base = ex
            .read_parameter(&pname)
            .unwrap()
            .as_f32()
            .unwrap()
            .to_vec();
        let count: usize = dims.iter().product();
        let eps = 1e-2f32;
        for i in (0..count).step_by((count / 24).max(1)) {
            let mut eval = |delta: f32| -> f32 {
                let mut p = base.clone();
                p[i] += delta;
                ex.write_parameter(&pname, &HostData::F32(p)).unwrap();
                ex.run(ProgramKind::Eval, 0, &inputs, &ctx, None).unwrap();
                ex.take_value(0, loss).unwrap().as_f32().unwrap()[0]
            };
            let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
            let tol = 2e-2 * fd.abs().max(grad[i].abs()) + 2e-2;
            assert!(
                (fd - grad[i]).abs() <= tol,
                "{name}: d/d{pname}[{i}] autodiff {} vs finite difference {fd}",
                grad[i]
            );
        }
        ex.write_parameter(&pname, &HostData::F32(base)).unwrap();
    }
}

fn none() -> BTreeMap<String, HostData> {
    BTreeMap::new()
}

fn unary(u: UnaryOp, low: f32, high: f32) {
    check(u.name(), none(), |b, _| {
        let x = param(b, "x", &[3, 4], low, high);
        b.op(Op::Unary(u), &[x]).unwrap()
    });
}

#[test]
fn relu_gradient() {
    unary(UnaryOp::Relu, 0.1, 1.0);
    check("relu_negative", none(), |b, _| {
        let x = param(b, "x", &[8], -1.0, -0.1);
        b.op(Op::Unary(UnaryOp::Relu), &[x]).unwrap()
    });
}

#[test]
fn gelu_tanh_exp_neg_gradients() {
    unary(UnaryOp::Gelu, -2.0, 2.0);
    unary(UnaryOp::Tanh, -2.0, 2.0);
    unary(UnaryOp::Exp, -1.0, 1.0);
    unary(UnaryOp::Neg, -1.0, 1.0);
}

#[test]
fn log_and_sqrt_gradients() {
    unary(UnaryOp::Log, 0.5, 2.0);
    unary(UnaryOp::Sqrt, 0.5, 2.0);
}

#[test]
fn binary_gradients_with_broadcasting() {
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        check(op.name(), none(), |b, _| {
            let x = param(b, "x", &[2, 3, 4], -1.0, 1.0);
            let y = param(b, "y", &[3, 1], 0.5, 1.5);
            b.op(Op::Binary(op), &[x, y]).unwrap()
        });
    }
}

#[test]
fn scale_reshape_permute_gradients() {
    check("scale", none(), |b, _| {
        let x = param(b, "x", &[5], -1.0, 1.0);
        b.op(Op::Scale { factor: -2.5 }, &[x]).unwrap()
    });
    check("reshape", none(), |b, _| {
        let x = param(b, "x", &[2, 6], -1.0, 1.0);
        b.op(
            Op::Reshape {
                shape: Shape::fixed(&[3, 4]),
            },
            &[x],
        )
        .unwrap()
    });
    check("permute", none(), |b, _| {
        let x = param(b, "x", &[2, 3, 4], -1.0, 1.0);
        b.op(
            Op::Permute {
                perm: vec![2, 0, 1],
            },
            &[x],
        )
        .unwrap()
    });
}

#[test]
fn slice_concat_expand_sum_to_gradients() {
    check("slice", none(), |b, _| {
        let x = param(b, "x", &[4, 6], -1.0, 1.0);
        b.op(
            Op::Slice {
                axis: 1,
                start: 1,
                end: 4,
            },
            &[x],
        )
        .unwrap()
    });
    check("slice_backward", none(), |b, _| {
        let x = param(b, "x", &[4, 2], -1.0, 1.0);
        b.op(
            Op::SliceBackward {
                axis: 1,
                start: 3,
                len: 6,
            },
            &[x],
        )
        .unwrap()
    });
    check("concat", none(), |b, _| {
        let x = param(b, "x", &[2, 3], -1.0, 1.0);
        let y = param(b, "y", &[2, 2], -1.0, 1.0);
        b.op(Op::Concat { axis: 1 }, &[x, y, x]).unwrap()
    });
    check("expand", none(), |b, _| {
        let x = param(b, "x", &[3, 1], -1.0, 1.0);
        b.op(
            Op::Expand {
                shape: Shape::fixed(&[2, 3, 4]),
            },
            &[x],
        )
        .unwrap()
    });
    check("sum_to", none(), |b, _| {
        let x = param(b, "x", &[2, 3, 4], -1.0, 1.0);
        b.op(
            Op::SumTo {
                shape: Shape::fixed(&[3, 1]),
            },
            &[x],
        )
        .unwrap()
    });
}

#[test]
fn reduce_gradients() {
    for (op, keepdim) in [
        (ReduceOp::Sum, false),
        (ReduceOp::Mean, true),
        (ReduceOp::Max, false),
        (ReduceOp::Max, true),
    ] {
        check(op.name(), none(), |b, _| {
            let x = param(b, "x", &[3, 5, 2], -1.0, 1.0);
            b.op(
                Op::Reduce {
                    op,
                    axis: 1,
                    keepdim,
                },
                &[x],
            )
            .unwrap()
        });
    }
}

#[test]
fn matmul_gradients_for_every_transpose_and_batch_layout() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        check("matmul", none(), |b, _| {
            let a = param(b, "a", if ta { &[4, 3] } else { &[3, 4] }, -1.0, 1.0);
            let c = param(b, "c", if tb { &[5, 4] } else { &[4, 5] }, -1.0, 1.0);
            b.op(
                Op::MatMul {
                    trans_a: ta,
                    trans_b: tb,
                },
                &[a, c],
            )
            .unwrap()
        });
        check("matmul_shared_rhs", none(), |b, _| {
            let a = param(b, "a", if ta { &[2, 4, 3] } else { &[2, 3, 4] }, -1.0, 1.0);
            let c = param(b, "c", if tb { &[5, 4] } else { &[4, 5] }, -1.0, 1.0);
            b.op(
                Op::MatMul {
                    trans_a: ta,
                    trans_b: tb,
                },
                &[a, c],
            )
            .unwrap()
        });
    }
    check("matmul_batched", none(), |b, _| {
        let a = param(b, "a", &[2, 3, 4], -1.0, 1.0);
        let c = param(b, "c", &[2, 4, 5], -1.0, 1.0);
        b.op(
            Op::MatMul {
                trans_a: false,
                trans_b: false,
            },
            &[a, c],
        )
        .unwrap()
    });
    check("matmul_shared_lhs", none(), |b, _| {
        let a = param(b, "a", &[3, 4], -1.0, 1.0);
        let c = param(b, "c", &[2, 4, 5], -1.0, 1.0);
        b.op(
            Op::MatMul {
                trans_a: false,
                trans_b: false,
            },
            &[a, c],
        )
        .unwrap()
    });
}

#[test]
fn softmax_and_layer_norm_gradients() {
    check("softmax", none(), |b, _| {
        let x = param(b, "x", &[3, 5], -2.0, 2.0);
        b.op(Op::Softmax, &[x]).unwrap()
    });
    check("layer_norm", none(), |b, _| {
        let x = param(b, "x", &[2, 3, 6], -2.0, 2.0);
        let w = param(b, "w", &[6], 0.5, 1.5);
        let c = param(b, "c", &[6], -0.5, 0.5);
        b.op(Op::LayerNorm { eps: 1e-5 }, &[x, w, c]).unwrap()
    });
}

#[test]
fn embedding_gradient_accumulates_repeated_rows() {
    check("embedding", none(), |b, ins| {
        let t = param(b, "table", &[5, 3], -1.0, 1.0);
        let idx = labels(b, "idx", &[1, 4, 1, 0, 1, 2], ins);
        let shape = Shape::fixed(&[2, 3]);
        let idx = b.op(Op::Reshape { shape }, &[idx]).unwrap();
        b.op(Op::Embedding, &[t, idx]).unwrap()
    });
}

#[test]
fn causal_attention_gradient() {
    check("causal_attention", none(), |b, _| {
        let qkv = param(b, "qkv", &[2, 4, 12], -1.0, 1.0);
        b.op(Op::CausalAttention { heads: 2 }, &[qkv]).unwrap()
    });
}

#[test]
fn cross_entropy_gradient() {
    check("cross_entropy", none(), |b, ins| {
        let logits = param(b, "logits", &[4, 6], -2.0, 2.0);
        let y = labels(b, "y", &[0, 5, 2, 2], ins);
        b.op(Op::CrossEntropy, &[logits, y]).unwrap()
    });
}

#[test]
fn dropout_gradient_uses_the_forward_mask() {
    check("dropout", none(), |b, _| {
        let x = param(b, "x", &[64], -1.0, 1.0);
        b.op(Op::Dropout { p: 0.3, seed: 9 }, &[x]).unwrap()
    });
    check("dropout_backward", none(), |b, _| {
        let x = param(b, "x", &[64], -1.0, 1.0);
        b.op(Op::DropoutBackward { p: 0.3, seed: 9 }, &[x]).unwrap()
    });
}

#[test]
fn second_order_gradients_are_refused_by_name() {
    let mut b = GraphBuilder::new();
    let x = param(&mut b, "x", &[3], -1.0, 1.0);
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
    let err: Result<_> = super::differentiate(b.finish(s).unwrap());
    assert_eq!(
        err.unwrap_err().to_string(),
        "second-order gradient of relu_backward is not yet supported: weft differentiates training graphs once"
    );
}

#[test]
fn column_mask_gradient_is_zero_on_masked_columns() {
    check("column_mask", none(), |b, _| {
        let x = param(b, "x", &[3, 4], -1.0, 1.0);
        let mask = Op::ColumnMask {
            start: 4,
            valid: 6,
            fill: -3.0,
        };
        b.op(mask, &[x]).unwrap()
    });
}

#[test]
fn moe_gate_gradient_passes_through_kept_probabilities() {
    // Columns 2 apart, so a perturbation never changes the routing: every token picks
    // experts 2 then 1, and capacity 3 drops the last three tokens from both.
    check("moe_gate", none(), |b, ins| {
        let p = param(b, "probs", &[6, 3], 0.0, 1.0);
        let off = b.input("off", Shape::fixed(&[6, 3]), DType::F32).unwrap();
        let values = (0..18).map(|i| 2.0 * (i % 3) as f32).collect();
        ins.insert("off".into(), HostData::F32(values));
        let probs = b.op(Op::Binary(BinaryOp::Add), &[p, off]).unwrap();
        let gate = Op::MoeGate {
            top_k: 2,
            capacity_factor: 0.75,
            weighted: true,
        };
        b.op(gate, &[probs]).unwrap()
    });
}

#[test]
fn moe_dispatch_and_combine_gradients_reach_tokens_and_gates() {
    // The routing of `moe_gate_gradient_passes_through_kept_probabilities` (stable under the
    // perturbation); tokens through their experts' slots, a per-slot scale standing in for the
    // experts, and back weighted by the gates.
    check("moe_dispatch", none(), |b, ins| {
        let p = param(b, "probs", &[6, 3], 0.0, 1.0);
        let x = param(b, "x", &[6, 2], -1.0, 1.0);
        let off = b.input("off", Shape::fixed(&[6, 3]), DType::F32).unwrap();
        let values = (0..18).map(|i| 2.0 * (i % 3) as f32).collect();
        ins.insert("off".into(), HostData::F32(values));
        let probs = b.op(Op::Binary(BinaryOp::Add), &[p, off]).unwrap();
        let (top_k, capacity_factor) = (2, 0.75);
        let gate = Op::MoeGate {
            top_k,
            capacity_factor,
            weighted: true,
        };
        let gates = b.op(gate, &[probs]).unwrap();
        let tokens = crate::ir::TokenSlice::ALL;
        let dispatch = Op::MoeDispatch {
            top_k,
            capacity_factor,
            tokens,
        };
        let slots = b.op(dispatch, &[x, gates]).unwrap();
        let experts = param(b, "experts", &[3, 3, 2], -1.0, 1.0);
        let ye = b.op(Op::Binary(BinaryOp::Mul), &[slots, experts]).unwrap();
        b.op(Op::MoeCombine { tokens }, &[ye, gates]).unwrap()
    });
}
