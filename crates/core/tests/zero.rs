//! ZeRO v0 (optimizer state sharded across data-parallel replicas): the parity harness's
//! single-device losses under DP, DP with accumulation and DP x PP; bit-identical to plain data
//! parallelism; 1/R of the optimizer state per device, measured and predicted; checkpoints that
//! move between ZeRO and plain layouts; and the refusals.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_core::Error;
use weft_core::session::Trainer;

fn zero() -> Value {
    json!({"zero.level": "v0"})
}

#[test]
fn zero_v0_matches_one_device_under_dp_accumulation_and_pipelines() {
    assert_parity_with("dp2 zero", 1, 2, 1, "PreferBackward", zero());
    assert_parity_with("dp4 zero", 1, 4, 1, "PreferBackward", zero());
    assert_parity_with("dp2 x ga2 zero", 1, 2, 2, "PreferBackward", zero());
    assert_parity_with("dp2 x pp2 m4 zero", 2, 4, 4, "PreferBackward", zero());
}

#[test]
fn zero_v0_is_bit_identical_to_plain_data_parallelism() {
    let (plain, pt) = train_with(1, 2, 1, "PreferBackward", json!({}));
    let (sharded, zt) = train_with(1, 2, 1, "PreferBackward", zero());
    assert_eq!(plain, sharded);
    for (name, _) in pt.parameter_shapes() {
        assert_eq!(
            pt.replica_parameters(&name).unwrap(),
            zt.replica_parameters(&name).unwrap(),
            "{name}"
        );
    }
}

fn optimizer_bytes(t: &Trainer) -> Vec<(u64, u64)> {
    let m = t.memory_json();
    m.as_object()
        .unwrap()
        .values()
        .map(|d| {
            (
                d["measured"]["optimizer_state"].as_u64().unwrap(),
                d["predicted"]["optimizer_state"].as_u64().unwrap(),
            )
        })
        .collect()
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
    let (_, p) = train_with(1, 2, 1, "PreferBackward", json!({}));
    p.save(&dir.join("p"), Value::Null).unwrap();
    // Shards are gathered on save: the two checkpoints hold the same optimizer state.
    let read = |n: &str| {
        weft_core::checkpoint::safetensors::read(&dir.join(n).join("optimizer.safetensors"))
            .unwrap()
            .tensors
    };
    let (zs, ps) = (read("z"), read("p"));
    assert_eq!(zs.len(), ps.len());
    assert!(zs.len() >= 2, "AdamW keeps two buffers per parameter");
    for (a, b) in zs.iter().zip(&ps) {
        assert!(a.name == b.name && a.data == b.data, "{} differs", a.name);
    }
    // ... and re-split on load: every layout continues exactly like the plain run.
    let next =
        |mut t: Trainer| -> Vec<f32> { (5..8).map(|s| t.step(&batch(s)).unwrap().loss).collect() };
    let want = next(p);
    for (from, extra, devices) in [("z", json!({}), 1), ("z", zero(), 2), ("p", zero(), 4)] {
        let mut t = Trainer::compile(
            model(1),
            options(devices, 1, "PreferBackward", extra.clone()),
        )
        .unwrap();
        t.load(&dir.join(from)).unwrap();
        let got = next(t);
        for (a, b) in want.iter().zip(&got) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs(),
                "{from} -> {extra} on {devices}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn zero_without_replicas_and_zero_v1_are_refused_by_name() {
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
    let err = compile(2, 1, "v1");
    assert!(
        matches!(&err, Error::Unsupported { feature, .. } if feature == "zero.level='v1'"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "zero.level='v1' is not yet supported: sharding gradients (reduce-scatter instead of \
         all-reduce) is not implemented; 'v0' shards optimizer state"
    );
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
