//! Mixture of experts: top-k routing with capacity and the load-balancing loss trains on one
//! device, and expert parallelism (experts cut across a split scope's devices, tokens sent to
//! them and back by all-to-all) trains to the same losses, in the routed form (`MoeDispatch`,
//! `MoeCombine`) and in the dense masked form; experts or tokens that do not divide are named.
use weft_core::ir::TokenSlice;

mod common;

use common::*;

const E: usize = 4;
const H: usize = 16;
const CLASSES: usize = 8;

fn mm(b: &mut GraphBuilder, x: NodeId, w: NodeId) -> NodeId {
    let o = Op::MatMul {
        trans_a: false,
        trans_b: false,
    };
    op(b, o, &[x, w])
}

fn reduce(b: &mut GraphBuilder, r: ReduceOp, axis: usize, x: NodeId) -> NodeId {
    let o = Op::Reduce {
        op: r,
        axis,
        keepdim: false,
    };
    op(b, o, &[x])
}

/// How the experts meet their tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    /// Dispatched into capacity-sized slots and combined back (what `m.nn.moe` builds).
    Routed,
    /// Every expert on every token, masked by the gates (a user's hand-written layer).
    Dense,
}

/// x [B, C] -> x + moe(x) -> linear -> cross-entropy + 0.01 * load-balancing loss, all in a
/// split scope over `tp` devices (0: no scope).
fn moe_model(tp: usize, experts: usize, form: Form) -> Graph {
    moe_model_with(tp, experts, form, false)
}

/// `backbone`: x first goes through relu(x W) in a replicate scope (EPL's MoE example, run with
/// `cluster.colocate_split_and_replicate`).
fn moe_model_with(tp: usize, experts: usize, form: Form, backbone: bool) -> Graph {
    let mut b = GraphBuilder::new();
    let mut x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(C)]), DType::F32)
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    let normal = Init::Normal {
        mean: 0.0,
        std: 0.3,
    };
    if backbone {
        if tp > 0 {
            b.open_taskgraph("backbone", Strategy::Replicate, 1);
        }
        let w = p(&mut b, "backbone.weight", &[C, C], normal.clone());
        let h = mm(&mut b, x, w);
        x = op(&mut b, Op::Unary(UnaryOp::Relu), &[h]);
    }
    if tp > 0 {
        b.open_taskgraph("moe", Strategy::Split, tp);
    }
    let wg = p(&mut b, "moe.gate.weight", &[C, experts], normal.clone());
    let logits = mm(&mut b, x, wg);
    let probs = op(&mut b, Op::Softmax, &[logits]);
    let gate = |top_k, capacity_factor, weighted| Op::MoeGate {
        top_k,
        capacity_factor,
        weighted,
    };
    let gates = op(&mut b, gate(2, 1.0, true), &[probs]);
    let w1 = p(&mut b, "moe.w1", &[experts, C, H], normal.clone());
    let b1 = p(&mut b, "moe.b1", &[experts, 1, H], Init::Constant(0.01));
    let w2 = p(&mut b, "moe.w2", &[experts, H, C], normal.clone());
    let b2 = p(&mut b, "moe.b2", &[experts, 1, C], Init::Constant(-0.01));
    let tokens = TokenSlice::ALL;
    let dispatch = Op::MoeDispatch {
        top_k: 2,
        capacity_factor: 1.0,
        tokens,
    };
    let h = match form {
        Form::Routed => op(&mut b, dispatch, &[x, gates]),
        Form::Dense => x,
    };
    let h = mm(&mut b, h, w1);
    let h = op(&mut b, Op::Binary(BinaryOp::Add), &[h, b1]);
    let h = op(&mut b, Op::Unary(UnaryOp::Gelu), &[h]);
    let ye = mm(&mut b, h, w2);
    let ye = op(&mut b, Op::Binary(BinaryOp::Add), &[ye, b2]);
    let moe = match form {
        Form::Routed => op(&mut b, Op::MoeCombine { tokens }, &[ye, gates]),
        Form::Dense => {
            let g = op(&mut b, Op::Permute { perm: vec![1, 0] }, &[gates]);
            let shape = b.reshape_dims(g, &[experts as i64, -1, 1]).unwrap();
            let g = op(&mut b, Op::Reshape { shape }, &[g]);
            let mixed = op(&mut b, Op::Binary(BinaryOp::Mul), &[g, ye]);
            reduce(&mut b, ReduceOp::Sum, 0, mixed)
        }
    };
    let r = op(&mut b, Op::Binary(BinaryOp::Add), &[x, moe]);
    let head = p(&mut b, "head", &[C, CLASSES], normal);
    let out = mm(&mut b, r, head);
    let ce = op(&mut b, Op::CrossEntropy, &[out, y]);
    let ce = reduce(&mut b, ReduceOp::Mean, 0, ce);
    // Switch's load-balancing loss: E * sum_e (share of tokens whose first choice is e) x
    // (mean probability of e).
    let top1 = op(&mut b, gate(1, experts as f32, false), &[probs]);
    let share = reduce(&mut b, ReduceOp::Mean, 0, top1);
    let mean_p = reduce(&mut b, ReduceOp::Mean, 0, probs);
    let aux = op(&mut b, Op::Binary(BinaryOp::Mul), &[share, mean_p]);
    let aux = reduce(&mut b, ReduceOp::Sum, 0, aux);
    let aux = op(
        &mut b,
        Op::Scale {
            factor: 0.01 * experts as f32,
        },
        &[aux],
    );
    let loss = op(&mut b, Op::Binary(BinaryOp::Add), &[ce, aux]);
    b.output("aux", aux).unwrap();
    b.finish(loss).unwrap()
}

fn moe_batch(step: usize) -> BTreeMap<String, HostData> {
    let mut m = BTreeMap::new();
    let x = (0..BATCH * C)
        .map(|i| rng::uniform(9, step as u64, i as u64) * 2.0 - 1.0)
        .collect();
    m.insert("x".to_string(), HostData::F32(x));
    let y = (0..BATCH)
        .map(|i| ((i * 3 + step) % CLASSES) as i32)
        .collect();
    m.insert("y".to_string(), HostData::I32(y));
    m
}

fn train(tp: usize, devices: usize, form: Form) -> (Vec<f32>, Trainer) {
    let opts = options(devices, 1, "PreferBackward", serde_json::json!({}));
    let mut t = Trainer::compile(moe_model(tp, E, form), opts).unwrap();
    let losses = (0..5)
        .map(|s| t.step(&moe_batch(s)).unwrap().loss)
        .collect();
    (losses, t)
}

fn count(g: &Graph, name: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == name).count()
}

#[test]
fn expert_parallelism_over_2_and_4_devices_matches_one_device() {
    for form in [Form::Routed, Form::Dense] {
        let (base, base_t) = train(0, 1, form);
        assert!(base.iter().all(|l| l.is_finite()), "{base:?}");
        assert!(base[4] < base[0], "the {form:?} MoE model learns: {base:?}");
        for tp in [2, 4] {
            let (got, t) = train(tp, tp, form);
            assert_losses_match(&got, &base, &format!("{form:?} ep{tp}"));
            // Each device holds E / tp experts; the router stays whole.
            let g = t.compiled();
            assert_eq!(param_shape(g, "moe.w1"), [E / tp, C, H]);
            assert_eq!(param_shape(g, "moe.b2"), [E / tp, 1, C]);
            assert_eq!(param_shape(g, "moe.gate.weight"), [C, E]);
            // Routed: tokens go to their experts and back by all-to-all, forward and backward.
            let all_to_all = if form == Form::Routed { 4 } else { 0 };
            assert_eq!(count(g, "tp_all_to_all"), all_to_all, "{form:?} ep{tp}");
            for n in ["moe.w1", "moe.w2", "moe.gate.weight"] {
                let diff = max_diff(&base_t.parameter(n).unwrap(), &t.parameter(n).unwrap());
                assert!(diff < 1e-4, "{form:?} ep{tp}: {n} differs by {diff}");
            }
        }
    }
}

#[test]
fn routed_experts_run_on_capacity_slots_only() {
    // 8 tokens, top-2 of 4 experts, capacity factor 1: ceil(8 * 2 / 4) = 4 slots per expert.
    let (_, t) = train(0, 1, Form::Routed);
    let g = t.compiled();
    let dispatch = g
        .nodes
        .iter()
        .find(|n| n.op.name() == "moe_dispatch")
        .unwrap();
    assert_eq!(dispatch.shape.to_vec(), [E, 4, C]);
}

#[test]
fn experts_or_tokens_that_do_not_divide_are_named() {
    let cases = [
        (
            Form::Dense,
            4,
            6,
            "'moe', op matmul %10: parameter 'moe.w1' holds 6 experts (axis 0), which do not divide over 4 devices",
        ),
        (
            Form::Routed,
            4,
            6,
            "'moe.gate', op moe_dispatch %10: 6 experts do not divide over 4 devices",
        ),
        (
            Form::Routed,
            3,
            6,
            "'moe.gate', op moe_dispatch %10: 8 tokens per micro-batch do not divide over 3 devices",
        ),
    ];
    for (form, tp, experts, want) in cases {
        let opts = options(tp, 1, "PreferBackward", serde_json::json!({}));
        let e = Trainer::compile(moe_model(tp, experts, form), opts)
            .err()
            .unwrap();
        let want = format!("split scope 'moe', layer {want}");
        assert!(e.to_string().contains(&want), "{form:?}: {e}");
    }
}

#[test]
fn expert_parallelism_composes_with_sequence_parallelism() {
    let (base, _) = train(0, 1, Form::Routed);
    let sp = serde_json::json!({"split.sequence_parallel": true});
    let mut t = Trainer::compile(
        moe_model(2, E, Form::Routed),
        options(2, 1, "PreferBackward", sp),
    )
    .unwrap();
    let got: Vec<f32> = (0..5)
        .map(|s| t.step(&moe_batch(s)).unwrap().loss)
        .collect();
    assert_losses_match(&got, &base, "ep2 with sequence parallelism");
    // The expert buffer meets its experts' weights as it is: no gather of the slots.
    assert_eq!(count(t.compiled(), "tp_all_to_all"), 4);
}

#[test]
fn a_replicated_backbone_colocates_with_expert_parallelism() {
    let model = |tp| moe_model_with(tp, E, Form::Routed, true);
    let train = |tp, devices, config| {
        let mut t =
            Trainer::compile(model(tp), options(devices, 1, "PreferBackward", config)).unwrap();
        (0..5)
            .map(|s| t.step(&moe_batch(s)).unwrap().loss)
            .collect::<Vec<f32>>()
    };
    let base = train(0, 1, serde_json::json!({}));
    let colocate = serde_json::json!({"cluster.colocate_split_and_replicate": true});
    // The backbone's rows are cut among the devices: each dispatches its own.
    assert_losses_match(&train(2, 2, colocate), &base, "colocated backbone + ep2");
}
