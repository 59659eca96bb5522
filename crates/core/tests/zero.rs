//! ZeRO v0 (optimizer state sharded across data-parallel replicas) and v1 (gradients too): the
//! parity harness's single-device losses under DP, DP with accumulation and DP x PP;
//! bit-identical to plain data parallelism; 1/R of the optimizer state (and for v1 of the
//! gradients) per device, measured and predicted; checkpoints that move between ZeRO and plain
//! layouts; and the refusals.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_core::Error;
use weft_core::session::Trainer;

fn zero() -> Value {
    json!({"zero.level": "v0"})
}

fn zero1() -> Value {
    json!({"zero.level": "v1"})
}

fn zero2() -> Value {
    json!({"zero.level": "v2"})
}

#[test]
fn zero_matches_one_device_under_dp_accumulation_and_pipelines() {
    for (level, extra) in [("v0", zero()), ("v1", zero1()), ("v2", zero2())] {
        assert_parity_with(
            &format!("dp2 {level}"),
            1,
            2,
            1,
            "PreferBackward",
            extra.clone(),
        );
        assert_parity_with(
            &format!("dp4 {level}"),
            1,
            4,
            1,
            "PreferBackward",
            extra.clone(),
        );
        assert_parity_with(
            &format!("dp2 x ga2 {level}"),
            1,
            2,
            2,
            "PreferBackward",
            extra.clone(),
        );
        assert_parity_with(
            &format!("dp2 x pp2 m4 {level}"),
            2,
            4,
            4,
            "PreferBackward",
            extra,
        );
    }
}

#[test]
fn zero_is_bit_identical_to_plain_data_parallelism() {
    let (plain, pt) = train_with(1, 2, 1, "PreferBackward", json!({}));
    for extra in [zero(), zero1(), zero2()] {
        let (sharded, zt) = train_with(1, 2, 1, "PreferBackward", extra.clone());
        assert_eq!(plain, sharded, "{extra}");
        for (name, _) in pt.parameter_shapes() {
            assert_eq!(
                pt.parameter(&name).unwrap(),
                zt.parameter(&name).unwrap(),
                "{extra}: {name}"
            );
        }
    }
}

/// (measured, predicted) bytes of one category on each device.
fn bytes_of(t: &Trainer, category: &str) -> Vec<(u64, u64)> {
    let m = t.memory_json();
    m.as_object()
        .unwrap()
        .values()
        .map(|d| {
            (
                d["measured"][category].as_u64().unwrap(),
                d["predicted"][category].as_u64().unwrap(),
            )
        })
        .collect()
}

fn optimizer_bytes(t: &Trainer) -> Vec<(u64, u64)> {
    bytes_of(t, "optimizer_state")
}

#[test]
fn zero_v1_keeps_a_quarter_of_the_gradients_too() {
    let (_, plain) = train_with(1, 4, 1, "PreferBackward", json!({}));
    let (_, sharded) = train_with(1, 4, 1, "PreferBackward", zero1());
    let whole = bytes_of(&plain, "grads")[0].0;
    for (measured, predicted) in bytes_of(&sharded, "grads") {
        // The replica's chunks, or one whole gradient on its way into a bucket if larger.
        assert!(measured * 3 < whole, "{measured} vs {whole}");
        assert!(
            predicted.abs_diff(measured) * 10 <= measured,
            "{predicted} vs {measured}"
        );
    }
}

#[test]
fn each_replica_keeps_a_quarter_of_the_optimizer_state_and_the_plan_says_so() {
    let (_, plain) = train_with(1, 4, 1, "PreferBackward", json!({}));
    let (_, sharded) = train_with(1, 4, 1, "PreferBackward", zero());
    let whole = optimizer_bytes(&plain)[0].0;
    assert!(whole > 0);
    for (measured, predicted) in optimizer_bytes(&sharded) {
        // Chunks are equal to within one element per state buffer (AdamW keeps two).
        assert!(measured.abs_diff(whole / 4) <= 8, "{measured} vs {whole}/4");
        assert_eq!(predicted, measured);
    }
}

#[test]
fn checkpoints_move_between_zero_and_plain_layouts() {
    let dir = tempdir("zero-ckpt");
    let (_, z) = train_with(1, 2, 1, "PreferBackward", zero());
    z.save(&dir.join("z"), Value::Null).unwrap();
    let (_, z1) = train_with(1, 2, 1, "PreferBackward", zero1());
    z1.save(&dir.join("z1"), Value::Null).unwrap();
    let (_, z2) = train_with(1, 2, 1, "PreferBackward", zero2());
    z2.save(&dir.join("z2"), Value::Null).unwrap();
    let (_, p) = train_with(1, 2, 1, "PreferBackward", json!({}));
    p.save(&dir.join("p"), Value::Null).unwrap();
    // Shards are gathered on save: the two checkpoints hold the same optimizer state.
    let file = |n: &str, f: &str| {
        let saved = weft_core::checkpoint::steps::resolve(&dir.join(n)).unwrap();
        weft_core::checkpoint::safetensors::read(&saved.join(f))
            .unwrap()
            .tensors
    };
    let read = |n: &str| file(n, "optimizer.safetensors");
    let ps = read("p");
    assert!(ps.len() >= 2, "AdamW keeps two buffers per parameter");
    // ... and v2's parameter pieces too.
    let params = |n: &str| file(n, "model.safetensors");
    assert_eq!(params("z2"), params("p"));
    for zs in [read("z"), read("z1"), read("z2")] {
        assert_eq!(zs.len(), ps.len());
        for (a, b) in zs.iter().zip(&ps) {
            assert!(a.name == b.name && a.data == b.data, "{} differs", a.name);
        }
    }
    // ... and re-split on load: every layout continues exactly like the plain run.
    let next =
        |mut t: Trainer| -> Vec<f32> { (5..8).map(|s| t.step(&batch(s)).unwrap().loss).collect() };
    let want = next(p);
    let cases = [
        ("z", json!({}), 1),
        ("z", zero(), 2),
        ("p", zero(), 4),
        ("z", zero1(), 4),
        ("z1", zero(), 2),
        ("z2", json!({}), 1),
        ("p", zero2(), 4),
        ("z", zero2(), 2),
    ];
    for (from, extra, devices) in cases {
        let mut t = Trainer::compile(
            model(1),
            options(devices, 1, "PreferBackward", extra.clone()),
        )
        .unwrap();
        t.load(&dir.join(from)).unwrap();
        let got = next(t);
        assert_losses_match(&got, &want, &format!("{from} -> {extra} on {devices}"));
    }
}

#[test]
fn zero_without_replicas_is_refused_by_name() {
    let compile = |devices: usize, stages: usize, level: &str| {
        Trainer::compile(
            model(stages),
            options(devices, 2, "PreferBackward", json!({"zero.level": level})),
        )
        .err()
        .expect("refused")
    };
    let err = compile(2, 2, "v0");
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "zero.level"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "zero.level='v0' shards optimizer state across data-parallel \
         replicas, but this layout has 1 replica (2 stage(s) on 2 device(s)); give it more \
         devices than its stages need, or unset zero.level"
    );
}

#[test]
fn zero_v1_combines_with_fp16_communication_and_local_clipping() {
    for extra in [
        json!({"communication.fp16": true, "communication.fp16_scale": 1024.0}),
        json!({"communication.clip_after_allreduce": false}),
    ] {
        let (plain, pt) = train_with(1, 2, 1, "PreferBackward", extra.clone());
        let mut with = extra.clone();
        with["zero.level"] = json!("v1");
        let (sharded, zt) = train_with(1, 2, 1, "PreferBackward", with);
        assert_eq!(sharded, plain, "{extra}");
        for (name, _) in pt.parameter_shapes() {
            assert_eq!(
                zt.parameter(&name).unwrap(),
                pt.parameter(&name).unwrap(),
                "{extra}: {name}"
            );
        }
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn grouped_apply_is_identical_and_cuts_zeros_gather_buffers() {
    // Without ZeRO parameters update one at a time in place: groups change nothing.
    let (plain, pt) = train_with(1, 2, 1, "PreferBackward", json!({}));
    let (grouped, gt) = train_with(
        1,
        2,
        1,
        "PreferBackward",
        json!({"optimizer.num_apply_group": 3}),
    );
    assert_eq!(plain, grouped);
    let gather = |t: &Trainer| -> (u64, u64) {
        let m = t.memory_json();
        let d = &m["cpu:0"]["zero_gather_bytes"];
        (
            d["measured"].as_u64().unwrap(),
            d["predicted"].as_u64().unwrap(),
        )
    };
    assert!(gt.memory_json()["cpu:0"].get("zero_gather_bytes").is_none());
    let many = json!({"zero.level": "v0"});
    let (one, ot) = train_with(1, 2, 1, "PreferBackward", many.clone());
    let mut grouped = many;
    grouped["optimizer.num_apply_group"] = json!(4);
    let (four, ft) = train_with(1, 2, 1, "PreferBackward", grouped);
    assert_eq!(one, plain);
    assert_eq!(four, plain);
    for (name, _) in pt.parameter_shapes() {
        assert_eq!(
            ft.replica_parameters(&name).unwrap(),
            pt.replica_parameters(&name).unwrap()
        );
    }
    let ((m1, p1), (m4, p4)) = (gather(&ot), gather(&ft));
    assert_eq!((m1, m4), (p1, p4));
    // Groups are whole parameters, so the largest one (the tied embedding) bounds the cut.
    assert!(m4 * 10 < m1 * 7, "grouped gather {m4} vs {m1}");
}

#[test]
fn zero_v2_keeps_a_quarter_of_the_parameters_and_the_plan_predicts_every_pool() {
    let (_, plain) = train_with(1, 4, 1, "PreferBackward", json!({}));
    let whole = bytes_of(&plain, "params")[0].0;
    let cases = [
        (1, 4, 1, zero2()),
        (1, 2, 2, zero2()),
        (2, 4, 4, zero2()),
        (1, 2, 1, json!({"zero.level": "v2", "offload.level": "v0"})),
        (
            1,
            2,
            1,
            json!({"zero.level": "v2", "gradient_checkpoint.type": "auto"}),
        ),
        (
            2,
            4,
            4,
            json!({"zero.level": "v2", "amp.level": "O1", "amp.dtype": "fp16",
                   "gradient_checkpoint.type": "auto"}),
        ),
    ];
    for (stages, devices, micro, extra) in cases {
        let (_, t) = train_with(stages, devices, micro, "PreferBackward", extra.clone());
        let m = t.memory_json();
        for (name, d) in m.as_object().unwrap() {
            let (measured, predicted) = (&d["measured"], &d["predicted"]);
            for key in ["params", "grads", "optimizer_state", "activations", "host"] {
                assert_eq!(measured[key], predicted[key], "{extra} {name} {key}: {d}");
            }
            assert_eq!(
                measured["resident_params"], predicted["resident_params"],
                "{d}"
            );
            // The joint peak: exact but for accumulation's last backward, where the plan
            // keeps every gradient whole while the reducer frees them one by one.
            let (mt, pt) = (
                measured["peak_total"].as_u64().unwrap(),
                predicted["total"].as_u64().unwrap(),
            );
            assert!(mt <= pt && (pt - mt) * 200 <= mt, "{extra} {name}: {d}");
            let g = &d["zero_gather_bytes"];
            assert_eq!(g["measured"], g["predicted"], "{extra} {name}: {d}");
        }
        if stages == 1 && devices == 4 {
            for (resident, _) in bytes_of(&t, "resident_params") {
                // Pieces are equal to within one element per gradient bucket.
                assert!(
                    resident.abs_diff(whole / 4) <= 64,
                    "{resident} vs {whole}/4"
                );
            }
        }
    }
}
