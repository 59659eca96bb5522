//! Mixed precision (`amp.level='O1'`): the rewritten graph's precisions, training that tracks
//! f32 over 50 steps (bf16 and fp16, alone and with data and pipeline parallelism), activation
//! memory predicted and measured, and dynamic loss scaling recovering from an injected
//! overflow. The 2% bar on a small gpt over real text is held by the ava suite (amp.spec.ts);
//! this toy memorises random tokens at lr 1e-2, the harshest case for bf16's 8-bit mantissa.

mod common;

use common::*;
use serde_json::{Value, json};

fn amp(dtype: &str) -> Value {
    json!({"amp.level": "O1", "amp.dtype": dtype})
}

/// Losses of 50 steps cycling over 4 batches (so the loss falls), on `stages` x `devices`.
fn fifty(stages: usize, devices: usize, micro: usize, extra: Value) -> Vec<f32> {
    let mut t = Trainer::compile(
        model(stages),
        options(devices, micro, "PreferBackward", extra),
    )
    .unwrap();
    (0..50)
        .map(|s| t.step(&batch(s % 4)).unwrap().loss)
        .collect()
}

#[test]
fn mixed_precision_tracks_f32_over_fifty_steps() {
    let f32_run = fifty(1, 1, 1, json!({}));
    assert!(
        f32_run[49] < f32_run[0] * 0.7,
        "the f32 run learns: {f32_run:?}"
    );
    for (name, stages, devices, micro, dtype) in [
        ("bf16", 1, 1, 1, "bf16"),
        ("fp16", 1, 1, 1, "fp16"),
        ("bf16 dp2", 1, 2, 1, "bf16"),
        ("fp16 pp2 m2", 2, 2, 2, "fp16"),
    ] {
        let got = fifty(stages, devices, micro, amp(dtype));
        let rel = (got[49] - f32_run[49]).abs() / f32_run[49];
        assert!(
            rel < 0.05,
            "{name}: step 50 loss {} vs f32 {} ({rel})",
            got[49],
            f32_run[49]
        );
        // ... and is not f32 in disguise.
        assert_ne!(got, f32_run, "{name}");
    }
}

#[test]
fn matmuls_run_in_the_low_type_and_everything_touchy_in_f32() {
    let t = Trainer::compile(model(1), options(1, 1, "PreferBackward", amp("bf16"))).unwrap();
    let g = t.compiled();
    let mut seen = (0, 0);
    for id in g.ids() {
        let n = g.node(id);
        match &n.op {
            Op::Parameter { .. } => assert_eq!(n.dtype, DType::F32, "master weights stay f32"),
            Op::MatMul { .. } | Op::CausalAttention { .. } | Op::CausalAttentionBackward { .. } => {
                assert_eq!(n.dtype, DType::BF16, "{}", n.op.name());
                seen.0 += 1;
            }
            Op::CrossEntropy | Op::Reduce { .. } | Op::Embedding => {
                assert_eq!(n.dtype, DType::F32, "{}", n.op.name());
                seen.1 += 1;
            }
            // Layer norm reads the (16-bit) residual stream as it is and sums it in f32.
            Op::LayerNorm { .. } => {
                assert_eq!(n.dtype, g.node(n.inputs[0]).dtype);
                assert_eq!(
                    g.node(n.inputs[1]).dtype,
                    DType::F32,
                    "its weight is not cast"
                );
            }
            _ => {}
        }
    }
    assert!(seen.0 > 20 && seen.1 >= 3, "{seen:?}");
    // No low-precision weight copy outlives forward: backward casts the parameters again.
    let param_cast = |id: NodeId| {
        let n = g.node(id);
        matches!(n.op, Op::Cast { .. }) && matches!(g.node(n.inputs[0]).op, Op::Parameter { .. })
    };
    for id in g
        .ids()
        .filter(|&id| g.node(id).phase == weft_core::ir::Phase::Backward)
    {
        for &x in &g.node(id).inputs {
            let forward = g.node(x).phase == weft_core::ir::Phase::Forward;
            assert!(
                !(param_cast(x) && forward),
                "backward {id} reads forward's cast {x}"
            );
        }
    }
    for (p, grad) in &g.grads {
        assert_eq!(g.node(*grad).dtype, DType::F32, "gradient of {p}");
    }
    let report = t.amp_report().unwrap();
    assert!(
        report.casts > 0 && report.low > 0 && report.full > 0,
        "{report:?}"
    );
    assert!(t.warnings().is_empty());
}

#[test]
fn bf16_keeps_fewer_activation_bytes_and_the_plan_predicts_them() {
    let act = |extra: Value| {
        let (_, t) = train_with(1, 1, 1, "PreferBackward", extra);
        let m = t.memory_json();
        let d = &m["cpu:0"];
        assert_eq!(
            d["measured"]["activations"], d["predicted"]["activations"],
            "{d}"
        );
        assert_eq!(d["measured"]["peak_total"], d["predicted"]["total"], "{d}");
        d["measured"]["activations"].as_u64().unwrap()
    };
    let (full, half) = (act(json!({})), act(amp("bf16")));
    assert!(
        half * 10 < full * 6,
        "bf16 activations {half} vs f32 {full}"
    );
}

#[test]
fn dynamic_loss_scaling_skips_an_overflowed_step_and_recovers() {
    let compile =
        || Trainer::compile(model(1), options(1, 1, "PreferBackward", amp("fp16"))).unwrap();
    let (mut clean, mut hit) = (compile(), compile());
    let first = clean.step(&batch(0)).unwrap();
    assert_eq!(first.loss_scale, Some(32768.0));
    assert_eq!(hit.step(&batch(0)).unwrap().loss, first.loss);
    // Inject an overflow: a loss scale no fp16 gradient survives.
    let before = hit.parameter("h.0.fc.weight").unwrap();
    hit.set_loss_scale(65536.0 * 65536.0).unwrap();
    let r = hit.step(&batch(1)).unwrap();
    assert!(r.skipped && r.skipped_steps == 1, "{r:?}");
    assert_eq!(r.loss_scale, Some(65536.0 * 32768.0));
    assert_eq!(r.step, 1, "a skipped step is not counted");
    assert_eq!(
        hit.parameter("h.0.fc.weight").unwrap(),
        before,
        "nothing updated"
    );
    // Halving until the gradients fit again, then training as the clean run does.
    let mut skipped = 1;
    loop {
        let r = hit.step(&batch(1)).unwrap();
        if !r.skipped {
            break;
        }
        skipped += 1;
        assert!(skipped < 40, "never recovered");
    }
    clean.step(&batch(1)).unwrap();
    for s in 2..6 {
        let (a, b) = (clean.step(&batch(s)).unwrap(), hit.step(&batch(s)).unwrap());
        assert!(!b.skipped);
        assert!(
            (a.loss - b.loss).abs() <= 1e-3 * a.loss,
            "step {s}: {} vs {}",
            b.loss,
            a.loss
        );
    }
}

#[test]
fn fp16_without_loss_scaling_warns_with_the_reason() {
    let mut extra = amp("fp16");
    extra["amp.loss_scale"] = json!(1);
    let t = Trainer::compile(model(1), options(1, 1, "PreferBackward", extra)).unwrap();
    assert_eq!(t.warnings().len(), 1);
    assert!(t.warnings()[0].contains("underflow"), "{:?}", t.warnings());
}

#[test]
fn a_checkpoint_keeps_the_loss_scale_and_skipped_steps() {
    let dir = std::env::temp_dir().join(format!("weft-amp-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let compile =
        || Trainer::compile(model(1), options(1, 1, "PreferBackward", amp("fp16"))).unwrap();
    let mut t = compile();
    t.step(&batch(0)).unwrap();
    t.set_loss_scale(65536.0 * 65536.0).unwrap();
    assert!(t.step(&batch(1)).unwrap().skipped);
    t.save(&dir, Value::Null).unwrap();
    let mut back = compile();
    back.load(&dir).unwrap();
    let (a, b) = (t.step(&batch(2)).unwrap(), back.step(&batch(2)).unwrap());
    assert_eq!(
        (a.loss_scale, a.skipped_steps),
        (b.loss_scale, b.skipped_steps)
    );
    assert_eq!(a.loss, b.loss);
    let _ = std::fs::remove_dir_all(&dir);
}
