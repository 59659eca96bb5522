//! Activation recomputation (`gradient_checkpoint.type`): `auto` (values live across each
//! block's end) and `collection` (the user's marks) train exactly like the plain run, alone,
//! with data parallelism and with pipeline stages; they cut the activations a forward keeps;
//! and the refusals name the key.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_core::session::Trainer;

fn auto() -> Value {
    json!({"gradient_checkpoint.type": "auto", "gradient_checkpoint.check_gradients": true})
}

fn collection() -> Value {
    json!({"gradient_checkpoint.type": "collection"})
}

/// Losses of 5 steps and the trainer, for the (optionally marked) model.
fn run(
    stages: usize,
    devices: usize,
    micro: usize,
    marked: bool,
    extra: Value,
) -> (Vec<f32>, Trainer) {
    let mut t = Trainer::compile(
        model_with(stages, marked),
        options(devices, micro, "PreferBackward", extra),
    )
    .unwrap();
    let losses = (0..5).map(|s| t.step(&batch(s)).unwrap().loss).collect();
    (losses, t)
}

#[test]
fn recomputed_training_is_bit_identical_to_the_plain_run() {
    for (stages, devices, micro) in [(1, 1, 1), (1, 2, 2), (2, 2, 4), (2, 4, 2)] {
        let (plain, pt) = run(stages, devices, micro, true, json!({}));
        for extra in [auto(), collection()] {
            let (got, t) = run(stages, devices, micro, true, extra.clone());
            assert_eq!(
                got, plain,
                "{extra} on {stages} stage(s), {devices} device(s), M={micro}"
            );
            for (name, _) in pt.parameter_shapes() {
                assert_eq!(
                    t.parameter(&name).unwrap(),
                    pt.parameter(&name).unwrap(),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn recomputation_matches_one_device_in_the_parity_harness() {
    assert_parity_with("auto recompute dp2", 1, 2, 1, "PreferBackward", auto());
    assert_parity_with("auto recompute pp2 m4", 2, 2, 4, "PreferBackward", auto());
}

fn activations(t: &Trainer) -> u64 {
    let m = t.memory_json();
    let d = m.as_object().unwrap().values().next().unwrap();
    assert_eq!(
        d["measured"]["activations"], d["predicted"]["activations"],
        "{d}"
    );
    d["measured"]["activations"].as_u64().unwrap()
}

#[test]
fn recomputation_keeps_fewer_activations_and_the_plan_predicts_them() {
    let (_, plain) = run(1, 1, 1, true, json!({}));
    let (_, auto) = run(1, 1, 1, true, auto());
    let (_, marked) = run(1, 1, 1, true, collection());
    let (p, a, c) = (
        activations(&plain),
        activations(&auto),
        activations(&marked),
    );
    assert!(a * 10 < p * 8, "auto {a} vs plain {p}");
    assert!(c * 10 < p * 8, "collection {c} vs plain {p}");
}

#[test]
fn collection_without_marks_is_refused_by_name() {
    let err = Trainer::compile(model(1), options(1, 1, "PreferBackward", collection()))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "gradient_checkpoint.type='collection' keeps the tensors marked with m.checkpoint(t) \
         and recomputes the rest, but no tensor is marked"
    );
}
