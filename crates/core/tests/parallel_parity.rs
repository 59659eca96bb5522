//! Parity harness: every parallel layout must reproduce single-device training (same init, same
//! global batch): losses within 1e-5 relative over 5 steps, f32. Layouts: data parallel (2, 4),
//! pipeline (2, 4 stages; GPipe, 1F1B, 1F1B with extra warm-up; M = 4, 8), DP x PP, gradient
//! accumulation. The model is a small transformer whose tied embedding crosses stages.

mod common;

use common::*;

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
