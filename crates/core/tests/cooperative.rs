//! The cooperative executor (`executor.cooperative`: every device on the calling thread) must
//! train exactly like the threaded one: the same losses and the same final parameters, bit for
//! bit, for data parallelism, both pipeline schedules, interleaved stages, DP x PP with
//! micro-batch accumulation, local clipping, fp16 gradient compression and ZeRO v0/v1. What it
//! cannot run is refused by name.

mod common;

use common::*;
use weft_core::process::{Launcher, ProcessRank};

fn cooperative(extra: &serde_json::Value) -> serde_json::Value {
    let mut v = extra.clone();
    v.as_object_mut()
        .unwrap()
        .insert("executor.cooperative".into(), serde_json::json!(true));
    v
}

/// Train the layout threaded and cooperatively; losses, evaluation and every replica's every
/// parameter must be identical.
fn assert_same(
    name: &str,
    (stages, devices, micro): (usize, usize, usize),
    strategy: &str,
    extra: serde_json::Value,
) {
    let (threaded, mut t) = train_with(stages, devices, micro, strategy, extra.clone());
    let (coop, mut c) = train_with(stages, devices, micro, strategy, cooperative(&extra));
    assert_same_training(name, (&threaded, &t), (&coop, &c));
    let (e1, e2) = (
        t.evaluate(&batch(9)).unwrap(),
        c.evaluate(&batch(9)).unwrap(),
    );
    assert_eq!(
        e1.loss.to_bits(),
        e2.loss.to_bits(),
        "{name}: evaluation loss"
    );
}

#[test]
fn data_parallel_and_accumulation_equal_the_threaded_run() {
    let none = serde_json::json!({});
    assert_same("dp2", (1, 2, 1), "PreferBackward", none.clone());
    // Four replicas: a sum in another order than the ranks' would round differently.
    assert_same("dp4", (1, 4, 1), "PreferBackward", none.clone());
    assert_same("dp2 m2", (1, 2, 2), "PreferBackward", none);
    let local_clip = serde_json::json!({"communication.clip_after_allreduce": false});
    assert_same("dp2 local clip", (1, 2, 1), "PreferBackward", local_clip);
    let fp16 = serde_json::json!({"communication.fp16": true, "communication.max_splits": 2});
    assert_same("dp2 fp16", (1, 2, 1), "PreferBackward", fp16);
}

#[test]
fn pipelines_equal_the_threaded_run_under_both_schedules() {
    let none = serde_json::json!({});
    assert_same("pp2 gpipe m4", (2, 2, 4), "PreferForward", none.clone());
    assert_same("pp2 1f1b m4", (2, 2, 4), "PreferBackward", none.clone());
    assert_same("dp2 x pp2 1f1b m4", (2, 4, 4), "PreferBackward", none);
    let v2 = serde_json::json!({"pipeline.num_virtual_stages": 2});
    assert_same("interleaved ranks 2 v2 m4", (4, 2, 4), "PreferBackward", v2);
}

#[test]
fn zero_v0_and_v1_equal_the_threaded_run() {
    let v0 = serde_json::json!({"zero.level": "v0", "optimizer.num_apply_group": 2});
    assert_same("dp2 zero v0", (1, 2, 1), "PreferBackward", v0);
    let v1 = serde_json::json!({"zero.level": "v1", "communication.max_splits": 3});
    assert_same("dp2 zero v1", (1, 2, 2), "PreferBackward", v1.clone());
    assert_same("dp2 x pp2 zero v1", (2, 4, 4), "PreferBackward", v1);
}

#[test]
fn the_plan_names_the_mode() {
    let opts = options(2, 4, "PreferBackward", cooperative(&serde_json::json!({})));
    let t = Trainer::compile(model(2), opts).unwrap();
    let text = t.plan_text();
    assert!(
        text.contains(
            "executor: cooperative (2 device(s) interleaved on the calling thread; gradients \
             reduced after compute, not overlapped with backward)"
        ),
        "{text}"
    );
    assert_eq!(t.plan_json()["executor"], "cooperative");
    let t = Trainer::compile(
        model(2),
        options(2, 4, "PreferBackward", serde_json::json!({})),
    );
    assert_eq!(t.unwrap().plan_json()["executor"], "threads");
}

#[test]
fn what_the_mode_cannot_run_is_refused_by_name() {
    let refused = |graph: Graph, devices: usize, extra: serde_json::Value| {
        let opts = options(devices, 1, "PreferBackward", cooperative(&extra));
        let err = Trainer::compile(graph, opts).err().unwrap();
        assert_eq!(err.code(), "WEFT_UNSUPPORTED");
        err.to_string()
    };
    assert_eq!(
        refused(model_split(1, false, 2), 2, serde_json::json!({})),
        "tensor parallelism in the cooperative executor is not yet supported: \
         executor.cooperative=true: its collectives run inside kernels, where one thread cannot \
         wait for its 2 peers; use the threaded executor (the native addon)"
    );
    assert_eq!(
        refused(model(1), 2, serde_json::json!({"zero.level": "v2"})),
        "zero.level='v2' in the cooperative executor is not yet supported: \
         executor.cooperative=true: its programs gather parameters while they run, where one \
         thread cannot wait for the other replicas; v0 and v1 run"
    );
    let mut opts = options(2, 1, "PreferBackward", cooperative(&serde_json::json!({})));
    opts.processes = Some(ProcessRank {
        launcher: Launcher::Weft,
        rank: 0,
        world: 2,
        local_rank: 0,
        local_world: 2,
        master_addr: "127.0.0.1".into(),
        master_port: 1,
        token: String::new(),
        launcher_fd: None,
    });
    let err = Trainer::compile(model(1), opts).err().unwrap();
    assert_eq!(
        err.to_string(),
        "the cooperative executor across processes is not yet supported: \
         executor.cooperative=true: several processes run one thread per device; set it on one \
         process"
    );
}
