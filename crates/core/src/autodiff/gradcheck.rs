//! Finite-difference gradient checks: one case per differentiable op (and per interesting
//! variant), each comparing autodiff's gradient with central differences of the loss. Public so
//! every backend runs the same cases: the CPU backend in this crate's tests, CUDA in weft-cuda's
//! GPU tests. Backward ops have no gradient of their own (weft differentiates once); each is
//! checked here through the forward op that emits it.

use crate::error::Result;
use crate::exec::{Backend, Executor, HostData, KernelCtx, ProgramKind};
use crate::ir::{BinaryOp, DType, GraphBuilder, Init, NodeId, Op, ReduceOp, Shape, UnaryOp};
use crate::rng;
use std::collections::BTreeMap;

/// Builds `out = f(params)`, adding any integer inputs it needs to the map.
type Build = dyn Fn(&mut GraphBuilder, &mut BTreeMap<String, HostData>) -> NodeId + Send + Sync;

/// One gradient check.
pub struct Case {
    pub name: String,
    build: Box<Build>,
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let groups: [fn(&mut Vec<Case>); 16] = [
        relu_gradient,
        gelu_tanh_exp_neg_gradients,
        log_and_sqrt_gradients,
        binary_gradients_with_broadcasting,
        scale_reshape_permute_gradients,
        slice_concat_expand_sum_to_gradients,
        reduce_gradients,
        matmul_gradients_for_every_transpose_and_batch_layout,
        softmax_and_layer_norm_gradients,
        embedding_gradient_accumulates_repeated_rows,
        causal_attention_gradient,
        cross_entropy_gradient,
        dropout_gradient_uses_the_forward_mask,
        column_mask_gradient_is_zero_on_masked_columns,
        moe_gate_gradient_passes_through_kept_probabilities,
        moe_dispatch_and_combine_gradients_reach_tokens_and_gates,
    ];
    groups.iter().for_each(|g| g(&mut out));
    out
}

fn add(
    out: &mut Vec<Case>,
    name: &str,
    build: impl Fn(&mut GraphBuilder, &mut BTreeMap<String, HostData>) -> NodeId + Send + Sync + 'static,
) {
    out.push(Case {
        name: name.to_string(),
        build: Box::new(build),
    });
}

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

/// Run `case` on `backend`: build `out`, take loss = sum(out * r) for a fixed random r, and
/// compare a sample of every parameter's gradient with central differences. `Err`: the case
/// could not run there (an op the backend lacks); `Ok(Err(why))`: a gradient disagrees.
pub fn check<B: Backend>(case: &Case, backend: B) -> Result<std::result::Result<(), String>> {
    let mut inputs = BTreeMap::new();
    let mut b = GraphBuilder::new();
    let out = (case.build)(&mut b, &mut inputs);
    let shape = b.node(out)?.shape.clone();
    let n = shape.size();
    let r: Vec<f32> = (0..n)
        .map(|i| rng::uniform(11, 5, i as u64) * 2.0 - 1.0)
        .collect();
    inputs.insert("__r".into(), HostData::F32(r));
    let rin = b.input("__r", shape, DType::F32)?;
    let prod = b.op(Op::Binary(BinaryOp::Mul), &[out, rin])?;
    let flat_shape = b.reshape_dims(prod, &[-1])?;
    let flat = b.op(Op::Reshape { shape: flat_shape }, &[prod])?;
    let sum = Op::Reduce {
        op: ReduceOp::Sum,
        axis: 0,
        keepdim: false,
    };
    let loss = b.op(sum, &[flat])?;
    let g = super::differentiate(b.finish(loss)?)?;
    let stages = crate::ir::StageMap::single(&g);
    let mut ex = Executor::new(backend, g, &stages, 0, 7)?;
    let ctx = KernelCtx {
        step: 3,
        ..Default::default()
    };
    ex.run(ProgramKind::Forward, 0, &inputs, &ctx, None)?;
    ex.run(ProgramKind::Backward, 0, &inputs, &ctx, None)?;
    ex.take_value(0, loss)?;
    for (pname, dims) in ex.parameter_shapes() {
        let Some(grad) = ex.read_grad(&pname)? else {
            return Ok(Err(format!("{}: {pname} has no gradient", case.name)));
        };
        let grad = grad.to_f32().unwrap_or_default().into_owned();
        let base = ex.read_parameter(&pname)?;
        let base = base.to_f32().unwrap_or_default().into_owned();
        let count: usize = dims.iter().product();
        let eps = 1e-2f32;
        for i in (0..count).step_by((count / 24).max(1)) {
            let mut eval = |delta: f32| -> Result<f32> {
                let mut p = base.clone();
                p[i] += delta;
                ex.write_parameter(&pname, &HostData::F32(p))?;
                ex.run(ProgramKind::Eval, 0, &inputs, &ctx, None)?;
                Ok(ex.take_value(0, loss)?.to_f32().map_or(f32::NAN, |v| v[0]))
            };
            let fd = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            let tol = 2e-2 * fd.abs().max(grad[i].abs()) + 2e-2;
            if (fd - grad[i]).abs() > tol {
                return Ok(Err(format!(
                    "{}: d/d{pname}[{i}] autodiff {} vs finite difference {fd}",
                    case.name, grad[i]
                )));
            }
        }
        ex.write_parameter(&pname, &HostData::F32(base))?;
    }
    Ok(Ok(()))
}

fn unary(out: &mut Vec<Case>, u: UnaryOp, low: f32, high: f32) {
    add(out, u.name(), move |b, _| {
        let x = param(b, "x", &[3, 4], low, high);
        b.op(Op::Unary(u), &[x]).unwrap()
    });
}

fn relu_gradient(out: &mut Vec<Case>) {
    unary(out, UnaryOp::Relu, 0.1, 1.0);
    add(out, "relu_negative", move |b, _| {
        let x = param(b, "x", &[8], -1.0, -0.1);
        b.op(Op::Unary(UnaryOp::Relu), &[x]).unwrap()
    });
}

fn gelu_tanh_exp_neg_gradients(out: &mut Vec<Case>) {
    unary(out, UnaryOp::Gelu, -2.0, 2.0);
    unary(out, UnaryOp::Tanh, -2.0, 2.0);
    unary(out, UnaryOp::Exp, -1.0, 1.0);
    unary(out, UnaryOp::Neg, -1.0, 1.0);
}

fn log_and_sqrt_gradients(out: &mut Vec<Case>) {
    unary(out, UnaryOp::Log, 0.5, 2.0);
    unary(out, UnaryOp::Sqrt, 0.5, 2.0);
}

fn binary_gradients_with_broadcasting(out: &mut Vec<Case>) {
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        add(out, op.name(), move |b, _| {
            let x = param(b, "x", &[2, 3, 4], -1.0, 1.0);
            let y = param(b, "y", &[3, 1], 0.5, 1.5);
            b.op(Op::Binary(op), &[x, y]).unwrap()
        });
    }
}

fn scale_reshape_permute_gradients(out: &mut Vec<Case>) {
    add(out, "scale", move |b, _| {
        let x = param(b, "x", &[5], -1.0, 1.0);
        b.op(Op::Scale { factor: -2.5 }, &[x]).unwrap()
    });
    add(out, "reshape", move |b, _| {
        let x = param(b, "x", &[2, 6], -1.0, 1.0);
        b.op(
            Op::Reshape {
                shape: Shape::fixed(&[3, 4]),
            },
            &[x],
        )
        .unwrap()
    });
    add(out, "permute", move |b, _| {
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

fn slice_concat_expand_sum_to_gradients(out: &mut Vec<Case>) {
    add(out, "slice", move |b, _| {
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
    add(out, "slice_backward", move |b, _| {
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
    add(out, "concat", move |b, _| {
        let x = param(b, "x", &[2, 3], -1.0, 1.0);
        let y = param(b, "y", &[2, 2], -1.0, 1.0);
        b.op(Op::Concat { axis: 1 }, &[x, y, x]).unwrap()
    });
    add(out, "expand", move |b, _| {
        let x = param(b, "x", &[3, 1], -1.0, 1.0);
        b.op(
            Op::Expand {
                shape: Shape::fixed(&[2, 3, 4]),
            },
            &[x],
        )
        .unwrap()
    });
    add(out, "sum_to", move |b, _| {
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

fn reduce_gradients(out: &mut Vec<Case>) {
    for (op, keepdim) in [
        (ReduceOp::Sum, false),
        (ReduceOp::Mean, true),
        (ReduceOp::Max, false),
        (ReduceOp::Max, true),
    ] {
        add(out, op.name(), move |b, _| {
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

fn matmul_gradients_for_every_transpose_and_batch_layout(out: &mut Vec<Case>) {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        add(out, "matmul", move |b, _| {
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
        add(out, "matmul_shared_rhs", move |b, _| {
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
    add(out, "matmul_batched", move |b, _| {
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
    add(out, "matmul_shared_lhs", move |b, _| {
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

fn softmax_and_layer_norm_gradients(out: &mut Vec<Case>) {
    add(out, "softmax", move |b, _| {
        let x = param(b, "x", &[3, 5], -2.0, 2.0);
        b.op(Op::Softmax, &[x]).unwrap()
    });
    add(out, "layer_norm", move |b, _| {
        let x = param(b, "x", &[2, 3, 6], -2.0, 2.0);
        let w = param(b, "w", &[6], 0.5, 1.5);
        let c = param(b, "c", &[6], -0.5, 0.5);
        b.op(Op::LayerNorm { eps: 1e-5 }, &[x, w, c]).unwrap()
    });
}

fn embedding_gradient_accumulates_repeated_rows(out: &mut Vec<Case>) {
    add(out, "embedding", move |b, ins| {
        let t = param(b, "table", &[5, 3], -1.0, 1.0);
        let idx = labels(b, "idx", &[1, 4, 1, 0, 1, 2], ins);
        let shape = Shape::fixed(&[2, 3]);
        let idx = b.op(Op::Reshape { shape }, &[idx]).unwrap();
        b.op(Op::Embedding, &[t, idx]).unwrap()
    });
}

fn causal_attention_gradient(out: &mut Vec<Case>) {
    add(out, "causal_attention", move |b, _| {
        let qkv = param(b, "qkv", &[2, 4, 12], -1.0, 1.0);
        b.op(Op::CausalAttention { heads: 2 }, &[qkv]).unwrap()
    });
}

fn cross_entropy_gradient(out: &mut Vec<Case>) {
    add(out, "cross_entropy", move |b, ins| {
        let logits = param(b, "logits", &[4, 6], -2.0, 2.0);
        let y = labels(b, "y", &[0, 5, 2, 2], ins);
        b.op(Op::CrossEntropy, &[logits, y]).unwrap()
    });
}

fn dropout_gradient_uses_the_forward_mask(out: &mut Vec<Case>) {
    add(out, "dropout", move |b, _| {
        let x = param(b, "x", &[64], -1.0, 1.0);
        b.op(Op::Dropout { p: 0.3, seed: 9 }, &[x]).unwrap()
    });
    add(out, "dropout_backward", move |b, _| {
        let x = param(b, "x", &[64], -1.0, 1.0);
        b.op(Op::DropoutBackward { p: 0.3, seed: 9 }, &[x]).unwrap()
    });
}

fn column_mask_gradient_is_zero_on_masked_columns(out: &mut Vec<Case>) {
    add(out, "column_mask", move |b, _| {
        let x = param(b, "x", &[3, 4], -1.0, 1.0);
        let mask = Op::ColumnMask {
            start: 4,
            valid: 6,
            fill: -3.0,
        };
        b.op(mask, &[x]).unwrap()
    });
}

fn moe_gate_gradient_passes_through_kept_probabilities(out: &mut Vec<Case>) {
    // Columns 2 apart, so a perturbation never changes the routing: every token picks
    // experts 2 then 1, and capacity 3 drops the last three tokens from both.
    add(out, "moe_gate", move |b, ins| {
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

fn moe_dispatch_and_combine_gradients_reach_tokens_and_gates(out: &mut Vec<Case>) {
    // The routing of `moe_gate_gradient_passes_through_kept_probabilities` (stable under the
    // perturbation); tokens through their experts' slots, a per-slot scale standing in for the
    // experts, and back weighted by the gates.
    add(out, "moe_dispatch", move |b, ins| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::cpu::CpuBackend;

    /// The CPU backend with GELU's backward 10% off: a wrong kernel the check must catch.
    struct Skewed(CpuBackend);

    impl Backend for Skewed {
        type Buffer = HostData;
        fn name(&self) -> String {
            "skewed".into()
        }
        fn alloc(&self, dtype: DType, len: usize) -> Result<HostData> {
            self.0.alloc(dtype, len)
        }
        fn upload(&self, data: &HostData) -> Result<HostData> {
            self.0.upload(data)
        }
        fn write(&self, buf: &mut HostData, data: crate::exec::HostView<'_>) -> Result<()> {
            self.0.write(buf, data)
        }
        fn download(&self, buf: &HostData) -> Result<HostData> {
            self.0.download(buf)
        }
        fn execute(
            &self,
            op: &Op,
            inputs: &[crate::exec::TensorRef<'_, HostData>],
            out: &mut HostData,
            out_shape: &[usize],
            ctx: &KernelCtx,
        ) -> Result<()> {
            self.0.execute(op, inputs, out, out_shape, ctx)?;
            if *op == Op::UnaryBackward(UnaryOp::Gelu) {
                self.0.scale_inplace(out, 1.1)?;
            }
            Ok(())
        }
        fn sum_squares(&self, buf: &HostData) -> Result<f64> {
            self.0.sum_squares(buf)
        }
        fn scale_inplace(&self, buf: &mut HostData, factor: f32) -> Result<()> {
            self.0.scale_inplace(buf, factor)
        }
        fn add_inplace(&self, dst: &mut HostData, src: &HostData) -> Result<()> {
            self.0.add_inplace(dst, src)
        }
        fn update(
            &self,
            rule: &crate::exec::UpdateRule,
            step: u64,
            param: &mut HostData,
            grad: &HostData,
            state: &mut [HostData],
            range: std::ops::Range<usize>,
        ) -> Result<()> {
            self.0.update(rule, step, param, grad, state, range)
        }
    }

    #[test]
    fn a_wrong_backward_kernel_is_caught() {
        let all = cases();
        let gelu = all.iter().find(|c| c.name == "gelu").unwrap();
        assert_eq!(check(gelu, CpuBackend::new(1)).unwrap(), Ok(()));
        let why = check(gelu, Skewed(CpuBackend::new(1)))
            .unwrap()
            .unwrap_err();
        assert!(why.starts_with("gelu: d/dx["), "{why}");
    }

    #[test]
    fn every_gradient_matches_central_differences_on_the_cpu() {
        let all = cases();
        assert!(all.len() > 40, "{} cases", all.len());
        for case in &all {
            if let Err(why) = check(case, CpuBackend::new(1)).unwrap() {
                panic!("{why}");
            }
        }
    }
}
