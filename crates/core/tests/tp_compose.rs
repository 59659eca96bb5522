//! Tensor parallelism composes with the rest of training: checkpoints hold whole tensors, so a
//! run saved under one tensor-parallel width resumes under another exactly; mixed precision
//! runs inside split scopes (the collectives add in f32) and tracks the unsplit run.

mod common;

use common::*;
use serde_json::json;

fn trainer(tp: usize, devices: usize, config: serde_json::Value) -> Trainer {
    let opts = options(devices, 1, "PreferBackward", config);
    Trainer::compile(model_vocab(1, false, tp, V), opts).unwrap()
}

fn steps(t: &mut Trainer, range: std::ops::Range<usize>) -> Vec<f32> {
    range.map(|s| t.step(&batch(s)).unwrap().loss).collect()
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_checkpoint_saved_under_one_tensor_parallel_width_resumes_under_another() {
    let mut whole = trainer(1, 1, json!({}));
    let base = steps(&mut whole, 0..5);
    // (tp, devices, config) saving, then resuming: shards assembled on save (ZeRO's pieces of
    // them too), cut again on load, Adam's state with them.
    let zero2 = json!({"zero.level": "v2"});
    let cases = [
        ((2, 2, json!({})), (1, 1, json!({}))),
        ((1, 1, json!({})), (4, 4, json!({}))),
        ((2, 2, json!({})), (4, 4, json!({}))),
        ((2, 4, zero2.clone()), (1, 1, json!({}))),
        ((1, 1, json!({})), (2, 4, zero2)),
    ];
    for (i, ((save_tp, save_n, save_cfg), (load_tp, load_n, load_cfg))) in
        cases.into_iter().enumerate()
    {
        let dir = tempdir(&format!("tp-ckpt-{i}"));
        let mut first = trainer(save_tp, save_n, save_cfg);
        steps(&mut first, 0..2);
        first.save(&dir, json!({})).unwrap();
        let mut second = trainer(load_tp, load_n, load_cfg);
        second.load(&dir).unwrap();
        let resumed = steps(&mut second, 2..5);
        let what =
            format!("case {i}, tp{save_tp} on {save_n} -> tp{load_tp} on {load_n}, from step 3");
        assert_losses_match(&resumed, &base[2..], &what);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn mixed_precision_inside_split_scopes_tracks_the_unsplit_run() {
    let bf16 = json!({"amp.level": "O1", "amp.dtype": "bf16"});
    let mut one = trainer(1, 1, bf16.clone());
    let base = steps(&mut one, 0..5);
    assert!(base[4] < base[0], "bf16 learns: {base:?}");
    let mut split = trainer(2, 2, bf16);
    assert!(split.amp_report().unwrap().low > 0);
    let got = steps(&mut split, 0..5);
    for (i, (a, b)) in base.iter().zip(&got).enumerate() {
        // Row-parallel partial sums round to bf16 before the group adds them (one rounding
        // more than one device's): within bf16's few parts in a thousand.
        assert!(
            (a - b).abs() <= 1e-2 * a.abs(),
            "bf16 tp2: step {} loss {b} vs one device {a}",
            i + 1
        );
    }
    // ... and is not f32 in disguise.
    let mut f32_split = trainer(2, 2, json!({}));
    assert_ne!(steps(&mut f32_split, 0..5), got);
}

#[test]
fn zero_shards_the_tensor_parallel_shards_across_replicas() {
    let mut one = trainer(1, 1, json!({}));
    let base = steps(&mut one, 0..5);
    for level in ["v0", "v1", "v2"] {
        let mut t = trainer(2, 4, json!({ "zero.level": level }));
        let got = steps(&mut t, 0..5);
        assert_losses_match(&got, &base, &format!("zero {level} dp2 x tp2"));
        for n in ["wte", "h.0.attn.weight", "h.3.fc.bias"] {
            let diff = max_diff(&one.parameter(n).unwrap(), &t.parameter(n).unwrap());
            assert!(diff < 1e-4, "zero {level}: {n} differs by {diff}");
        }
    }
}
