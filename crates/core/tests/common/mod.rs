//! Shared by the parallel test files: a small transformer whose tied embedding crosses stages,
//! seeded batches, and trainers for any layout.
#![allow(dead_code)] // each test file uses a different part

pub use std::collections::BTreeMap;
pub use weft_core::exec::HostData;
pub use weft_core::ir::{
    BinaryOp, DType, Dim, Graph, GraphBuilder, Init, NodeId, Op, ReduceOp, Shape, Strategy, UnaryOp,
};
pub use weft_core::rng;
pub use weft_core::session::{Trainer, TrainerOptions};

pub const T: usize = 8;
pub const C: usize = 16;
pub const V: usize = 32;
pub const BATCH: usize = 8;

pub fn p(b: &mut GraphBuilder, name: &str, dims: &[usize], init: Init) -> NodeId {
    b.parameter(name, Shape::fixed(dims), init).unwrap()
}

pub fn op(b: &mut GraphBuilder, o: Op, ins: &[NodeId]) -> NodeId {
    b.op(o, ins).unwrap()
}

/// The mean over rows of the cross-entropy of `logits` against `labels`: every test model's loss.
pub fn mean_cross_entropy(b: &mut GraphBuilder, logits: NodeId, labels: NodeId) -> NodeId {
    let ce = op(b, Op::CrossEntropy, &[logits, labels]);
    let mean = Op::Reduce {
        op: ReduceOp::Mean,
        axis: 0,
        keepdim: false,
    };
    op(b, mean, &[ce])
}

pub fn linear(b: &mut GraphBuilder, x: NodeId, name: &str, i: usize, o: usize) -> NodeId {
    let w = p(
        b,
        &format!("{name}.weight"),
        &[i, o],
        Init::Normal {
            mean: 0.0,
            std: 0.2,
        },
    );
    let bias = p(
        b,
        &format!("{name}.bias"),
        &[o],
        Init::Uniform {
            low: -0.1,
            high: 0.1,
        },
    );
    let y = op(
        b,
        Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[x, w],
    );
    op(b, Op::Binary(BinaryOp::Add), &[y, bias])
}

pub fn block(b: &mut GraphBuilder, x: NodeId, i: usize) -> NodeId {
    block_heads(b, x, i, 2)
}

/// `block` with `heads` attention heads.
pub fn block_heads(b: &mut GraphBuilder, x: NodeId, i: usize, heads: usize) -> NodeId {
    let lw = p(b, &format!("h.{i}.ln.weight"), &[C], Init::Ones);
    let lb = p(b, &format!("h.{i}.ln.bias"), &[C], Init::Zeros);
    let h = op(b, Op::LayerNorm { eps: 1e-5 }, &[x, lw, lb]);
    let qkv = linear(b, h, &format!("h.{i}.attn"), C, 3 * C);
    let a = op(b, Op::CausalAttention { heads }, &[qkv]);
    let a = linear(b, a, &format!("h.{i}.proj"), C, C);
    let x = op(b, Op::Binary(BinaryOp::Add), &[x, a]);
    let f = linear(b, x, &format!("h.{i}.fc"), C, 2 * C);
    let f = op(b, Op::Unary(UnaryOp::Gelu), &[f]);
    let f = linear(b, f, &format!("h.{i}.out"), 2 * C, C);
    op(b, Op::Binary(BinaryOp::Add), &[x, f])
}

/// A 4-block transformer; `stages` > 1 puts consecutive blocks into that many TaskGraphs.
pub fn model(stages: usize) -> Graph {
    model_with(stages, false)
}

/// `model`, with each block's output marked as a recomputation checkpoint when `mark`.
pub fn model_with(stages: usize, mark: bool) -> Graph {
    model_split(stages, mark, 0)
}

/// `model_with`; `tp` > 0 makes every stage a split scope over `tp` devices (tensor
/// parallelism; one stage is then one split scope) with 4 heads per block.
pub fn model_split(stages: usize, mark: bool, tp: usize) -> Graph {
    model_vocab(stages, mark, tp, V)
}

/// `model_split` with a vocabulary of `vocab` tokens.
pub fn model_vocab(stages: usize, mark: bool, tp: usize, vocab: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let idx = b
        .input("idx", Shape(vec![Dim::Batch(1), Dim::Fixed(T)]), DType::I32)
        .unwrap();
    let tgt = b
        .input("targets", Shape(vec![Dim::Batch(T)]), DType::I32)
        .unwrap();
    let scope = |b: &mut GraphBuilder, s: usize| {
        if tp > 0 {
            b.open_taskgraph(&format!("stage{s}"), Strategy::Split, tp);
        } else if stages > 1 {
            b.open_taskgraph(&format!("stage{s}"), Strategy::Replicate, 1);
        }
    };
    let heads = if tp > 0 { 4 } else { 2 };
    scope(&mut b, 0);
    let wte = p(
        &mut b,
        "wte",
        &[vocab, C],
        Init::Normal {
            mean: 0.0,
            std: 0.3,
        },
    );
    let mut x = op(&mut b, Op::Embedding, &[wte, idx]);
    let layers = 4;
    for i in 0..layers {
        if i > 0 && i % (layers / stages.max(1)) == 0 {
            scope(&mut b, i / (layers / stages));
        }
        x = block_heads(&mut b, x, i, heads);
        if mark {
            b.checkpoint(x).unwrap();
        }
    }
    let shape = b.reshape_dims(x, &[-1, C as i64]).unwrap();
    let x = op(&mut b, Op::Reshape { shape }, &[x]);
    // Tied head: the embedding of stage 0 is read again by the last stage.
    let logits = op(
        &mut b,
        Op::MatMul {
            trans_a: false,
            trans_b: true,
        },
        &[x, wte],
    );
    let loss = mean_cross_entropy(&mut b, logits, tgt);
    b.output("logits", logits).unwrap();
    b.finish(loss).unwrap()
}

pub fn batch(step: usize) -> BTreeMap<String, HostData> {
    let tok =
        |i: usize, salt: u64| (rng::uniform(5, salt + step as u64, i as u64) * V as f32) as i32;
    let mut m = BTreeMap::new();
    m.insert(
        "idx".to_string(),
        HostData::I32((0..BATCH * T).map(|i| tok(i, 100)).collect()),
    );
    m.insert(
        "targets".to_string(),
        HostData::I32((0..BATCH * T).map(|i| tok(i, 200)).collect()),
    );
    m
}

pub fn options(
    devices: usize,
    micro: usize,
    strategy: &str,
    extra: serde_json::Value,
) -> TrainerOptions {
    let adamw =
        serde_json::json!({"kind": "adamw", "lr": 1e-2, "weight_decay": 0.01, "grad_clip": 1.0});
    options_optimizer(devices, micro, strategy, extra, adamw)
}

/// `options` with another optimizer (its JSON form, e.g. with a learning-rate schedule).
pub fn options_optimizer(
    devices: usize,
    micro: usize,
    strategy: &str,
    extra: serde_json::Value,
    optimizer: serde_json::Value,
) -> TrainerOptions {
    let mut config =
        serde_json::json!({"pipeline.num_micro_batch": micro, "pipeline.strategy": strategy});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let opts = serde_json::json!({
        "batch": BATCH, "seed": 3, "devices": format!("cpu:{devices}"), "threads": 1,
        "optimizer": optimizer,
        "config": config,
    });
    TrainerOptions::from_json(&opts).unwrap()
}

pub fn train(stages: usize, devices: usize, micro: usize, strategy: &str) -> (Vec<f32>, Trainer) {
    train_with(stages, devices, micro, strategy, serde_json::json!({}))
}

pub fn train_with(
    stages: usize,
    devices: usize,
    micro: usize,
    strategy: &str,
    extra: serde_json::Value,
) -> (Vec<f32>, Trainer) {
    let mut t = Trainer::compile(model(stages), options(devices, micro, strategy, extra)).unwrap();
    let losses = (0..5).map(|s| t.step(&batch(s)).unwrap().loss).collect();
    (losses, t)
}

pub fn assert_parity(name: &str, stages: usize, devices: usize, micro: usize, strategy: &str) {
    assert_parity_with(
        name,
        stages,
        devices,
        micro,
        strategy,
        serde_json::json!({}),
    );
}

pub fn assert_parity_with(
    name: &str,
    stages: usize,
    devices: usize,
    micro: usize,
    strategy: &str,
    extra: serde_json::Value,
) {
    let (base, base_t) = train(1, 1, 1, "PreferBackward");
    let (got, t) = train_with(stages, devices, micro, strategy, extra);
    for (i, (a, b)) in base.iter().zip(&got).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "{name}: step {} loss {b} vs single-device {a}",
            i + 1
        );
    }
    for n in ["wte", "h.3.out.weight"] {
        let (x, y) = (base_t.parameter(n).unwrap(), t.parameter(n).unwrap());
        let (x, y) = (x.as_f32().unwrap(), y.as_f32().unwrap());
        let diff = x
            .iter()
            .zip(y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "{name}: parameter {n} differs by {diff}");
    }
}

/// Losses equal within 1e-5 relative, step by step (the parity harness's bar).
pub fn assert_losses_match(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: step counts");
    for (i, (b, a)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "{what}: step {} loss {b} vs reference {a}",
            i + 1
        );
    }
}

/// The largest elementwise difference of two f32 tensors of one length.
pub fn max_diff(a: &HostData, b: &HostData) -> f32 {
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    assert_eq!(a.len(), b.len(), "tensors of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// A parameter's shape as a compiled (per-device) graph holds it.
pub fn param_shape(g: &Graph, name: &str) -> Vec<usize> {
    let (id, _) = g
        .parameters()
        .into_iter()
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("no parameter '{name}'"));
    g.node(id).shape.to_vec()
}

/// Two runs trained alike: losses and every replica's every parameter equal bit for bit.
pub fn assert_same_training(
    name: &str,
    (l1, t1): (&[f32], &Trainer),
    (l2, t2): (&[f32], &Trainer),
) {
    let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(to_bits(l2), to_bits(l1), "{name}: losses {l2:?} vs {l1:?}");
    for n in t1.parameter_names() {
        let (a, b) = (
            t1.replica_parameters(&n).unwrap(),
            t2.replica_parameters(&n).unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{name}: replicas of {n}");
        for (r, (x, y)) in a.iter().zip(&b).enumerate() {
            let bits = |d: &HostData| to_bits(d.as_f32().unwrap());
            let first = bits(x).iter().zip(&bits(y)).position(|(p, q)| p != q);
            assert_eq!(first, None, "{name}: parameter {n} of replica {r} differs");
        }
    }
}
