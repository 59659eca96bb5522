//! Parity harness: every parallel layout must reproduce single-device training (same init, same
//! global batch): losses within 1e-5 relative over 5 steps, f32. Layouts: data parallel (2, 4),
//! pipeline (2, 4 stages; GPipe, 1F1B, 1F1B with extra warm-up; M = 4, 8), DP x PP, gradient
//! accumulation. The model is a small transformer whose tied embedding crosses stages.

use std::collections::BTreeMap;
use weft_core::exec::HostData;
use weft_core::ir::{
    BinaryOp, DType, Dim, Graph, GraphBuilder, Init, NodeId, Op, ReduceOp, Shape, Strategy, UnaryOp,
};
use weft_core::rng;
use weft_core::session::{Trainer, TrainerOptions};

const T: usize = 8;
const C: usize = 16;
const V: usize = 32;
const BATCH: usize = 8;

fn p(b: &mut GraphBuilder, name: &str, dims: &[usize], init: Init) -> NodeId {
    b.parameter(name, Shape::fixed(dims), init).unwrap()
}

fn op(b: &mut GraphBuilder, o: Op, ins: &[NodeId]) -> NodeId {
    b.op(o, ins).unwrap()
}

fn linear(b: &mut GraphBuilder, x: NodeId, name: &str, i: usize, o: usize) -> NodeId {
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

fn block(b: &mut GraphBuilder, x: NodeId, i: usize) -> NodeId {
    let lw = p(b, &format!("h.{i}.ln.weight"), &[C], Init::Ones);
    let lb = p(b, &format!("h.{i}.ln.bias"), &[C], Init::Zeros);
    let h = op(b, Op::LayerNorm { eps: 1e-5 }, &[x, lw, lb]);
    let qkv = linear(b, h, &format!("h.{i}.attn"), C, 3 * C);
    let a = op(b, Op::CausalAttention { heads: 2 }, &[qkv]);
    let a = linear(b, a, &format!("h.{i}.proj"), C, C);
    let x = op(b, Op::Binary(BinaryOp::Add), &[x, a]);
    let f = linear(b, x, &format!("h.{i}.fc"), C, 2 * C);
    let f = op(b, Op::Unary(UnaryOp::Gelu), &[f]);
    let f = linear(b, f, &format!("h.{i}.out"), 2 * C, C);
    op(b, Op::Binary(BinaryOp::Add), &[x, f])
}

/// A 4-block transformer; `stages` > 1 puts consecutive blocks into that many TaskGraphs.
fn model(stages: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let idx = b
        .input("idx", Shape(vec![Dim::Batch(1), Dim::Fixed(T)]), DType::I32)
        .unwrap();
    let tgt = b
        .input("targets", Shape(vec![Dim::Batch(T)]), DType::I32)
        .unwrap();
    let scope = |b: &mut GraphBuilder, s: usize| {
        if stages > 1 {
            b.open_taskgraph(&format!("stage{s}"), Strategy::Replicate, 1);
        }
    };
    scope(&mut b, 0);
    let wte = p(
        &mut b,
        "wte",
        &[V, C],
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
        x = block(&mut b, x, i);
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
    let ce = op(&mut b, Op::CrossEntropy, &[logits, tgt]);
    let loss = op(
        &mut b,
        Op::Reduce {
            op: ReduceOp::Mean,
            axis: 0,
            keepdim: false,
        },
        &[ce],
    );
    b.output("logits", logits).unwrap();
    b.finish(loss).unwrap()
}

fn batch(step: usize) -> BTreeMap<String, HostData> {
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

fn options(
    devices: usize,
    micro: usize,
    strategy: &str,
    extra: serde_json::Value,
) -> TrainerOptions {
    let mut config =
        serde_json::json!({"pipeline.num_micro_batch": micro, "pipeline.strategy": strategy});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let opts = serde_json::json!({
        "batch": BATCH, "seed": 3, "devices": format!("cpu:{devices}"), "threads": 1,
        "optimizer": {"kind": "adamw", "lr": 1e-2, "weight_decay": 0.01, "grad_clip": 1.0},
        "config": config,
    });
    TrainerOptions::from_json(&opts).unwrap()
}

fn train(stages: usize, devices: usize, micro: usize, strategy: &str) -> (Vec<f32>, Trainer) {
    train_with(stages, devices, micro, strategy, serde_json::json!({}))
}

fn train_with(
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

fn assert_parity(name: &str, stages: usize, devices: usize, micro: usize, strategy: &str) {
    assert_parity_with(
        name,
        stages,
        devices,
        micro,
        strategy,
        serde_json::json!({}),
    );
}

fn assert_parity_with(
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

#[test]
fn data_parallel_2_and_4_match_one_device() {
    assert_parity("dp2", 1, 2, 1, "PreferBackward");
    assert_parity("dp4", 1, 4, 1, "PreferBackward");
}

#[test]
fn gradient_accumulation_matches_one_device() {
    assert_parity("ga4", 1, 1, 4, "PreferBackward");
}

#[test]
fn pipeline_2_stages_matches_one_device_under_every_schedule() {
    assert_parity("pp2 gpipe m4", 2, 2, 4, "PreferForward");
    assert_parity("pp2 1f1b m4", 2, 2, 4, "PreferBackward");
    assert_parity("pp2 1f1b+warmup m8", 2, 2, 8, "PreferBackwardOptimizer");
}

#[test]
fn pipeline_4_stages_matches_one_device() {
    assert_parity("pp4 1f1b m8", 4, 4, 8, "PreferBackward");
    assert_parity("pp4 gpipe m4", 4, 4, 4, "PreferForward");
}

#[test]
fn interleaved_virtual_stages_match_one_device() {
    let v2 = serde_json::json!({"pipeline.num_virtual_stages": 2});
    // 4 stages on 2 devices (stages 0 and 2 on cpu:0), and 4 stages on 2 devices x 2 replicas.
    assert_parity_with(
        "interleaved ranks 2 v2 m4",
        4,
        2,
        4,
        "PreferBackward",
        v2.clone(),
    );
    assert_parity_with(
        "interleaved ranks 2 v2 m8",
        4,
        2,
        8,
        "PreferBackward",
        v2.clone(),
    );
    assert_parity_with(
        "dp2 x interleaved ranks 2 v2 m4",
        4,
        4,
        4,
        "PreferBackward",
        v2,
    );
}

#[test]
fn data_parallel_times_pipeline_matches_one_device() {
    assert_parity("dp2 x pp2 m4", 2, 4, 4, "PreferBackward");
}

#[test]
fn replicas_stay_bit_identical() {
    let (_, t) = train(1, 4, 1, "PreferBackward");
    let _ = t;
    let (_, t2) = train(2, 4, 2, "PreferBackward");
    for name in t2.parameter_names() {
        let copies = t2.replica_parameters(&name).unwrap();
        for c in &copies[1..] {
            assert_eq!(c, &copies[0], "parameter {name} differs between replicas");
        }
    }
}

#[test]
fn bucketing_and_channels_do_not_change_the_result() {
    let (base, _) = train(1, 1, 1, "PreferBackward");
    let extra = serde_json::json!({"communication.max_splits": 2, "communication.num_communicators": 3, "communication.bucket_size_mb": 1});
    let (got, _) = train_with(1, 2, 1, "PreferBackward", extra);
    for (a, b) in base.iter().zip(&got) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{b} vs {a}");
    }
}

#[test]
fn fp16_gradient_compression_stays_close() {
    let (base, _) = train(1, 1, 1, "PreferBackward");
    let (got, _) = train_with(
        1,
        2,
        1,
        "PreferBackward",
        serde_json::json!({"communication.fp16": true}),
    );
    for (a, b) in base.iter().zip(&got) {
        assert!((a - b).abs() <= 2e-3 * a.abs(), "{b} vs {a}");
    }
}

#[test]
fn unimplemented_communication_settings_are_refused_not_ignored() {
    let local = serde_json::json!({"communication.clip_after_allreduce": false});
    let piped = Trainer::compile(model(2), options(4, 2, "PreferBackward", local))
        .err()
        .unwrap()
        .to_string();
    assert!(
        piped.starts_with(
            "communication.clip_after_allreduce=false with gradient clipping and pipeline stages is not yet supported"
        ),
        "{piped}"
    );
    // The tied embedding's gradient is dense (it sums the head's), so `false` changes nothing here.
    assert!(
        Trainer::compile(
            model(1),
            options(
                2,
                1,
                "PreferBackward",
                serde_json::json!({"communication.sparse_as_dense": false})
            )
        )
        .is_ok()
    );
    let mut b = GraphBuilder::new();
    let idx = b
        .input("idx", Shape(vec![Dim::Batch(1), Dim::Fixed(T)]), DType::I32)
        .unwrap();
    let table = p(&mut b, "table", &[V, C], Init::Ones);
    let e = op(&mut b, Op::Embedding, &[table, idx]);
    let flat = b.reshape_dims(e, &[-1]).unwrap();
    let flat = op(&mut b, Op::Reshape { shape: flat }, &[e]);
    let loss = op(
        &mut b,
        Op::Reduce {
            op: ReduceOp::Mean,
            axis: 0,
            keepdim: false,
        },
        &[flat],
    );
    let untied = b.finish(loss).unwrap();
    let e = Trainer::compile(
        untied,
        options(
            2,
            1,
            "PreferBackward",
            serde_json::json!({"communication.sparse_as_dense": false}),
        ),
    );
    assert!(
        e.err()
            .unwrap()
            .to_string()
            .starts_with("communication.sparse_as_dense=false is not yet supported")
    );
}

#[test]
fn bad_layouts_are_errors_that_name_the_numbers() {
    let err = |stages, devices, micro| {
        Trainer::compile(
            model(stages),
            options(devices, micro, "PreferBackward", serde_json::json!({})),
        )
        .err()
        .unwrap()
        .to_string()
    };
    assert_eq!(
        err(4, 2, 1),
        "the model has 4 pipeline stages but only 2 device(s); each stage needs its own device"
    );
    assert_eq!(
        err(2, 3, 1),
        "3 devices do not divide into replicas of 2 stages (3 % 2 = 1)"
    );
    assert_eq!(
        err(1, 2, 3),
        "batch: global batch B=8 does not split into R=2 replicas x M=3 micro-batches (B must be a multiple of R*M=6)"
    );
}

#[test]
fn a_tensor_flowing_back_to_an_earlier_stage_is_named() {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(4)]), DType::F32)
        .unwrap();
    b.open_taskgraph("first", Strategy::Replicate, 1);
    let w = p(&mut b, "w", &[4, 4], Init::Ones);
    let h = op(
        &mut b,
        Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[x, w],
    );
    let tg_second = b.open_taskgraph("second", Strategy::Replicate, 1);
    let late = op(&mut b, Op::Unary(UnaryOp::Tanh), &[h]);
    b.open_taskgraph("third", Strategy::Replicate, 1);
    let _ = tg_second;
    b.set_taskgraph(weft_core::ir::TaskGraphId(1)).unwrap();
    let back = op(&mut b, Op::Binary(BinaryOp::Add), &[h, late]);
    let flat = b.reshape_dims(back, &[-1]).unwrap();
    let flat = op(&mut b, Op::Reshape { shape: flat }, &[back]);
    let loss = op(
        &mut b,
        Op::Reduce {
            op: ReduceOp::Sum,
            axis: 0,
            keepdim: false,
        },
        &[flat],
    );
    let g = b.finish(loss).unwrap();
    let e = weft_core::passes::assign_stages(&g)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tensor %3 (`%3 = tanh(%2) : f32[B,4] tg2 fwd`) of stage 1 'second' flows back to stage 0 'first'"), "{e}");
}

#[test]
fn the_plan_shows_epl_slices_the_schedule_grid_and_memory() {
    let t = Trainer::compile(
        model(2),
        options(4, 4, "PreferBackward", serde_json::json!({})),
    )
    .unwrap();
    let plan = t.plan_json();
    assert_eq!(
        plan["taskgraphs"][0]["devices"],
        serde_json::json!([[0], [2]])
    );
    assert_eq!(
        plan["taskgraphs"][1]["devices"],
        serde_json::json!([[1], [3]])
    );
    // 1F1B: stage 0 warms up with S-s = 2 forwards; the last stage alternates.
    assert_eq!(
        plan["schedule"]["cpu:0"],
        serde_json::json!([
            "F0",
            "F1",
            "B0",
            "F2",
            "B1",
            "F3",
            "B2",
            "B3",
            "ALLREDUCE",
            "STEP"
        ])
    );
    assert_eq!(
        plan["schedule"]["cpu:1"],
        serde_json::json!([
            "F0",
            "B0",
            "F1",
            "B1",
            "F2",
            "B2",
            "F3",
            "B3",
            "ALLREDUCE",
            "STEP"
        ])
    );
    let text = t.plan_text();
    assert!(
        text.contains("taskgraph 0 'stage0': devices [[0], [2]]"),
        "{text}"
    );
    assert!(text.contains("rank 0 |"), "{text}");
    eprintln!("{text}");
}

#[test]
fn automatic_stages_match_one_device() {
    let auto = serde_json::json!({"auto.auto_parallel": true, "pipeline.num_stages": 2});
    assert_parity_with("auto 2 stages m4", 1, 2, 4, "PreferBackward", auto.clone());
    let t = Trainer::compile(model(1), options(2, 4, "PreferBackward", auto)).unwrap();
    let text = t.plan_text();
    assert!(text.contains("taskgraph 1 'stage1'"), "{text}");
    let scoped = serde_json::json!({"auto.auto_parallel": true, "pipeline.num_stages": 2});
    let err = Trainer::compile(model(2), options(2, 4, "PreferBackward", scoped))
        .err()
        .unwrap();
    assert_eq!(err.code(), "WEFT_CONFIG", "{err}");
    eprintln!("{text}");
}

#[test]
fn inputs_created_in_the_first_stage_are_loaded_by_the_stages_that_read_them() {
    // `targets` (i32) is created with stage 0 but read by the last stage's loss.
    let mut b = GraphBuilder::new();
    b.open_taskgraph("first", Strategy::Replicate, 1);
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(4)]), DType::F32)
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    let w = p(
        &mut b,
        "w",
        &[4, 4],
        Init::Normal {
            mean: 0.0,
            std: 0.5,
        },
    );
    let h = op(
        &mut b,
        Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[x, w],
    );
    b.open_taskgraph("second", Strategy::Replicate, 1);
    let h = op(&mut b, Op::Unary(UnaryOp::Tanh), &[h]);
    let ce = op(&mut b, Op::CrossEntropy, &[h, y]);
    let loss = op(
        &mut b,
        Op::Reduce {
            op: ReduceOp::Mean,
            axis: 0,
            keepdim: false,
        },
        &[ce],
    );
    let g = b.finish(loss).unwrap();
    let mut t =
        Trainer::compile(g, options(2, 2, "PreferBackward", serde_json::json!({}))).unwrap();
    let mut batch = BTreeMap::new();
    batch.insert(
        "x".to_string(),
        HostData::F32((0..32).map(|i| i as f32 / 32.0).collect()),
    );
    batch.insert(
        "y".to_string(),
        HostData::I32((0..8).map(|i| i % 4).collect()),
    );
    assert!(t.step(&batch).unwrap().loss.is_finite());
}

#[test]
fn a_failing_device_fails_its_peers_at_once_and_the_trainer_recovers() {
    let (_, mut t) = train(2, 4, 2, "PreferBackward");
    let mut bad = batch(0);
    if let Some(HostData::I32(idx)) = bad.get_mut("idx") {
        *idx.last_mut().unwrap() = 999; // outside the vocabulary, in replica 1's rows only
    }
    let started = std::time::Instant::now();
    let err = t.step(&bad).unwrap_err();
    assert_eq!(err.code(), "WEFT_BATCH", "{err}");
    assert!(
        started.elapsed().as_secs() < 30,
        "peers waited for the timeout"
    );
    assert!(
        t.step(&batch(1)).unwrap().loss.is_finite(),
        "the trainer is usable after the error"
    );
}

#[test]
fn a_node_that_is_the_loss_and_an_output_is_read_once() {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(4)]), DType::F32)
        .unwrap();
    let w = p(&mut b, "w", &[4, 1], Init::Ones);
    let y = op(
        &mut b,
        Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[x, w],
    );
    let flat = b.reshape_dims(y, &[-1]).unwrap();
    let y = op(&mut b, Op::Reshape { shape: flat }, &[y]);
    let loss = op(
        &mut b,
        Op::Reduce {
            op: ReduceOp::Mean,
            axis: 0,
            keepdim: false,
        },
        &[y],
    );
    b.output("loss", loss).unwrap();
    b.output("again", loss).unwrap();
    let mut t = Trainer::compile(
        b.finish(loss).unwrap(),
        options(2, 2, "PreferBackward", serde_json::json!({})),
    )
    .unwrap();
    let mut batch = BTreeMap::new();
    batch.insert("x".to_string(), HostData::F32(vec![1.0; 32]));
    let r = t.step(&batch).unwrap();
    assert_eq!(r.outputs.len(), 2);
    assert_eq!(r.outputs[0].2, HostData::F32(vec![4.0; 4]));
}

#[test]
fn local_clipping_before_the_all_reduce_is_epl_semantics() {
    let run = |local: bool, max: f32| {
        let extra = serde_json::json!({"communication.clip_after_allreduce": !local});
        let mut o = options(2, 2, "PreferBackward", extra);
        o.optimizer.grad_clip = Some(max);
        let mut t = Trainer::compile(model(1), o).unwrap();
        let losses: Vec<f32> = (0..3).map(|s| t.step(&batch(s)).unwrap().loss).collect();
        (losses, t)
    };
    // No clipping in effect: both orders give the same training.
    let (a, _) = run(true, 1e9);
    let (b, _) = run(false, 1e9);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "{x} vs {y}");
    }
    // Tight clipping: clipping each replica's gradient differs from clipping their mean, and the
    // replicas still agree bit for bit.
    let (c, t) = run(true, 0.05);
    let (d, _) = run(false, 0.05);
    assert_ne!(c[2], d[2]);
    let copies = t.replica_parameters("wte").unwrap();
    assert_eq!(copies[0], copies[1]);
}
