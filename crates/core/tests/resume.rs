//! Exact resume: for every layout, N uninterrupted steps equal K steps, a save, a fresh
//! trainer, a load and N-K steps, bit for bit: each step's loss, learning rate and skip, and at
//! the end every replica's parameters, the whole optimizer state and the step count.

mod common;

use common::*;
use serde_json::{Value, json};
use std::ops::Range;

/// Steps of the uninterrupted run, and the step after which the other run is saved.
const N: usize = 6;
const K: usize = 3;

/// One resume scenario: the model, the trainers' options, its batches, and something done to
/// the trainer before call `i` (an injected overflow).
struct Case {
    name: &'static str,
    graph: fn() -> Graph,
    options: fn() -> TrainerOptions,
    batch: fn(usize) -> BTreeMap<String, HostData>,
    before: fn(&mut Trainer, usize),
}

impl Case {
    fn new(name: &'static str, graph: fn() -> Graph, options: fn() -> TrainerOptions) -> Case {
        Case {
            name,
            graph,
            options,
            batch,
            before: |_, _| {},
        }
    }
}

/// Each call's report as bits: loss, learning rate, skipped.
fn calls(t: &mut Trainer, case: &Case, range: Range<usize>) -> Vec<(u32, u32, bool)> {
    range
        .map(|i| {
            (case.before)(t, i);
            let r = t.step(&(case.batch)(i)).unwrap();
            (r.loss.to_bits(), r.lr.to_bits(), r.skipped)
        })
        .collect()
}

fn bits(d: &HostData) -> Vec<u32> {
    d.as_f32().unwrap().iter().map(|x| x.to_bits()).collect()
}

/// Trains `case` uninterrupted and interrupted at K; asserts both end the same, bit for bit.
/// Returns the uninterrupted run's reports.
fn assert_resumes(case: &Case) -> Vec<(u32, u32, bool)> {
    let name = case.name;
    let mut whole = Trainer::compile((case.graph)(), (case.options)()).unwrap();
    let all = calls(&mut whole, case, 0..N);
    let mut first = Trainer::compile((case.graph)(), (case.options)()).unwrap();
    assert_eq!(calls(&mut first, case, 0..K), all[..K], "{name}: first leg");
    let dir = std::env::temp_dir().join(format!(
        "weft-resume-{}-{}",
        name.replace(' ', "-"),
        std::process::id()
    ));
    first.save(&dir, json!({"case": name})).unwrap();
    drop(first);
    let mut resumed = Trainer::compile((case.graph)(), (case.options)()).unwrap();
    assert_eq!(resumed.load(&dir).unwrap(), json!({"case": name}));
    std::fs::remove_dir_all(&dir).unwrap();
    let tail = calls(&mut resumed, case, K..N);
    assert_eq!(
        tail,
        all[K..],
        "{name}: (loss, lr, skipped) after the resume"
    );
    assert_eq!(resumed.step_count(), whole.step_count(), "{name}: step");
    for n in whole.parameter_names() {
        let (a, b) = (
            whole.replica_parameters(&n).unwrap(),
            resumed.replica_parameters(&n).unwrap(),
        );
        let (a, b): (Vec<_>, Vec<_>) = (a.iter().map(bits).collect(), b.iter().map(bits).collect());
        assert!(a == b, "{name}: parameter {n} differs");
        let (a, b) = (
            whole.optimizer_state(&n).unwrap(),
            resumed.optimizer_state(&n).unwrap(),
        );
        assert!(!a.is_empty(), "{name}: {n} has optimizer state");
        let (a, b): (Vec<_>, Vec<_>) = (a.iter().map(bits).collect(), b.iter().map(bits).collect());
        assert!(a == b, "{name}: optimizer state of {n} differs");
    }
    all
}

fn dp2() -> TrainerOptions {
    options(2, 1, "PreferBackward", json!({}))
}

#[test]
fn data_parallel_resumes_exactly() {
    assert_resumes(&Case::new("dp2", || model(1), dp2));
}

#[test]
fn pipelines_resume_exactly() {
    assert_resumes(&Case::new(
        "pp2 1f1b m4",
        || model(2),
        || options(2, 4, "PreferBackward", json!({})),
    ));
    assert_resumes(&Case::new(
        "pp2 gpipe m4",
        || model(2),
        || options(2, 4, "PreferForward", json!({})),
    ));
}

#[test]
fn tensor_parallel_resumes_exactly() {
    assert_resumes(&Case::new(
        "tp2",
        || model_split(1, false, 2),
        || options(2, 1, "PreferBackward", json!({})),
    ));
}

#[test]
fn zero_resumes_exactly_at_every_level() {
    assert_resumes(&Case::new(
        "zero v0",
        || model(1),
        || options(2, 1, "PreferBackward", json!({"zero.level": "v0"})),
    ));
    assert_resumes(&Case::new(
        "zero v1",
        || model(1),
        || options(2, 1, "PreferBackward", json!({"zero.level": "v1"})),
    ));
    assert_resumes(&Case::new(
        "zero v2",
        || model(1),
        || options(2, 1, "PreferBackward", json!({"zero.level": "v2"})),
    ));
}

#[test]
fn gradient_accumulation_resumes_exactly() {
    assert_resumes(&Case::new(
        "m4",
        || model(1),
        || options(1, 4, "PreferBackward", json!({})),
    ));
}

/// A loss scale this model's fp16 gradients overflow at twice (2^19): the step before the save
/// and the first after it are skipped, then the scale, halved twice, fits.
const HUGE_SCALE: f32 = 524_288.0;

#[test]
fn fp16_dynamic_loss_scale_resumes_exactly_across_a_skipped_step() {
    let case = Case {
        before: |t, i| {
            if i == K - 1 {
                t.set_loss_scale(HUGE_SCALE).unwrap();
            }
        },
        ..Case::new(
            "fp16 dynamic",
            || model(1),
            || {
                options(
                    1,
                    1,
                    "PreferBackward",
                    json!({"amp.level": "O1", "amp.dtype": "fp16"}),
                )
            },
        )
    };
    let all = assert_resumes(&case);
    let skipped: Vec<bool> = all.iter().map(|c| c.2).collect();
    // The save follows a skipped step, and the resumed run skips again (the halved scale is
    // still too large) before it updates: the scale, the skip count and the step all resume.
    assert_eq!(skipped, [false, false, true, true, false, false]);
}

/// A two-layer perceptron with dropout between the layers: its masks depend on the step.
fn dropout_mlp() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(8)]), DType::F32)
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    let h = linear(&mut b, x, "fc1", 8, 16);
    let h = op(&mut b, Op::Dropout { p: 0.25, seed: 11 }, &[h]);
    let h = op(&mut b, Op::Unary(UnaryOp::Gelu), &[h]);
    let logits = linear(&mut b, h, "fc2", 16, 4);
    let loss = mean_cross_entropy(&mut b, logits, y);
    b.finish(loss).unwrap()
}

fn dropout_batch(step: usize) -> BTreeMap<String, HostData> {
    let r = |i: usize, salt: u64| rng::uniform(9, salt + step as u64, i as u64);
    let mut m = BTreeMap::new();
    m.insert(
        "x".to_string(),
        HostData::F32((0..BATCH * 8).map(|i| r(i, 300) * 2.0 - 1.0).collect()),
    );
    m.insert(
        "y".to_string(),
        HostData::I32((0..BATCH).map(|i| (r(i, 400) * 4.0) as i32).collect()),
    );
    m
}

#[test]
fn dropout_masks_resume_exactly() {
    assert_resumes(&Case {
        batch: dropout_batch,
        ..Case::new("dropout dp2", dropout_mlp, dp2)
    });
}

fn cosine(total_steps: usize) -> Value {
    json!({"kind": "adamw", "lr": 1e-2, "schedule": "cosine", "warmup": 2,
           "total_steps": total_steps, "min_lr": 1e-3})
}

#[test]
fn a_cosine_schedule_with_warm_up_resumes_its_position_and_length() {
    let opts = || options_optimizer(2, 1, "PreferBackward", json!({}), cosine(N));
    let all = assert_resumes(&Case::new("cosine", || model(1), opts));
    let lrs: Vec<f32> = all.iter().map(|c| f32::from_bits(c.1)).collect();
    assert!(
        lrs[0] < lrs[1] && lrs[2] > lrs[N - 1],
        "warm-up then decay: {lrs:?}"
    );
    // The schedule's length is the checkpoint's: a trainer compiled with another total (as
    // `weft train --resume` once recomputed it, "10 in the first save, 20 after resuming")
    // is refused instead of bending the curve.
    let mut first = Trainer::compile(model(1), opts()).unwrap();
    first.step(&batch(0)).unwrap();
    let dir = std::env::temp_dir().join(format!("weft-resume-cosine-{}", std::process::id()));
    first.save(&dir, Value::Null).unwrap();
    let longer = options_optimizer(2, 1, "PreferBackward", json!({}), cosine(2 * N));
    let mut resumed = Trainer::compile(model(1), longer).unwrap();
    let err = resumed.load(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.code(), "WEFT_CHECKPOINT");
    assert_eq!(
        err.to_string(),
        format!(
            "checkpoint {}: trained with the learning-rate schedule cosine from 0.01 (2 warm-up \
             steps) to 0.001 at step 6, this trainer's is cosine from 0.01 (2 warm-up steps) to \
             0.001 at step 12; resume with the checkpoint's (its optimizer options and total \
             steps), or start a new run from its weights (loadWeights, --init)",
            dir.join("step-00000001").display()
        )
    );
    assert_eq!(resumed.step_count(), 0, "a refused load changes nothing");
}
