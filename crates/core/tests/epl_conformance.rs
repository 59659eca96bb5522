//! EPL conformance through weft's public surface: what `weft plan --json` prints
//! (`Trainer::plan_json`), the compile options and the config (explicit values and environment
//! variables). Every case cites the EPL file::test (or documented rule) it is ported from; where
//! weft differs on purpose the case asserts weft's behaviour and docs/EPL.md explains why.
//! Multi-process cases run threads as processes over a real TCP store on loopback.

mod common;
use common::*;
use serde_json::{Value, json};
use weft_core::config::Config;
use weft_core::process::{Launcher, ProcessRank};

fn opts(devices: usize, extra: Value) -> TrainerOptions {
    options(devices, 1, "PreferBackward", extra)
}

fn plan(stages: usize, o: TrainerOptions) -> Value {
    Trainer::compile(model(stages), o).unwrap().plan_json()
}

/// `taskgraphs[i].devices` of a plan: [taskgraph][replica][device] ids.
fn slices(plan: &Value) -> Vec<Vec<Vec<u64>>> {
    let tgs = plan["taskgraphs"].as_array().unwrap();
    tgs.iter()
        .map(|tg| serde_json::from_value(tg["devices"].clone()).unwrap())
        .collect()
}

fn err(o: TrainerOptions, stages: usize) -> String {
    match Trainer::compile(model(stages), o) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn losses(t: &mut Trainer) -> Vec<f32> {
    (0..3).map(|s| t.step(&batch(s)).unwrap().loss).collect()
}

/// One-device losses of the same model and config: layouts must not change the numbers.
fn single_device(stages: usize, extra: Value) -> Vec<f32> {
    let mut one = Trainer::compile(model(stages), opts(1, extra)).unwrap();
    losses(&mut one)
}

// ---- slicing: auto_cluster_test.py, strategy_new_test.py ----

#[test]
fn auto_slices_for_every_device_count_and_stage_count() {
    // auto_cluster_test.py::test_pipeline / test_data_parallel, strategy_new_test.py: devices
    // go replica by replica, stage by stage (4 devices, 2 stages: {0, 2} and {1, 3}).
    for stages in [1, 2, 4] {
        for n in (stages..=16).step_by(stages) {
            let replicas = n / stages;
            let mut o = opts(n, json!({}));
            o.batch = 8 * replicas;
            let p = plan(stages, o);
            let want: Vec<Vec<Vec<u64>>> = (0..stages)
                .map(|s| {
                    (0..replicas)
                        .map(|r| vec![(r * stages + s) as u64])
                        .collect()
                })
                .collect();
            assert_eq!(slices(&p), want, "{stages} stages on cpu:{n}");
            assert_eq!(
                p["batch"]["replicas"], replicas,
                "{stages} stages on cpu:{n}"
            );
        }
    }
}

#[test]
fn layout_all_puts_every_taskgraph_on_every_device_and_the_run_agrees() {
    // cluster_test.py::test_cluster_with_all; parallel.py: with fewer VirtualDevices than
    // TaskGraphs every TaskGraph goes on virtual_devices[0]: 4 replicas, each running both.
    let extra = json!({"cluster.layout": "all"});
    let mut t = Trainer::compile(model(2), opts(4, extra.clone())).unwrap();
    let p = t.plan_json();
    let every: Vec<Vec<u64>> = (0..4).map(|d| vec![d]).collect();
    assert_eq!(slices(&p), vec![every.clone(), every]);
    assert_eq!(p["devices"], json!(["cpu:0", "cpu:1", "cpu:2", "cpu:3"]));
    assert_eq!(p["batch"]["replicas"], 4);
    assert_eq!(p["stages"], 1);
    assert_losses_match(
        &losses(&mut t),
        &single_device(2, extra),
        "layout all, cpu:4",
    );
}

#[test]
fn layout_specific_from_the_config_on_a_simulated_cluster() {
    // cluster_test.py::test_cluster_with_specific: 2 workers x 4 devices, two TaskGraphs of
    // four one-device replicas, given by name.
    let names = |d: usize| -> Vec<Value> {
        [(0, d), (1, d), (0, d + 1), (1, d + 1)]
            .iter()
            .map(|(h, i)| json!([format!("host{h}/cpu:{i}")]))
            .collect()
    };
    let extra = json!({"cluster.layout": "specific", "cluster.specific": [names(0), names(2)]});
    let mut o = opts(8, extra);
    o.hosts = Some((2, 4));
    let p = plan(2, o);
    assert_eq!(
        slices(&p),
        [
            [[0], [4], [1], [5]].map(|r| r.to_vec()).to_vec(),
            [[2], [6], [3], [7]].map(|r| r.to_vec()).to_vec()
        ]
    );
    assert_eq!(p["cluster"], "2 hosts x 4 cpu devices");
    // Errors name the offending position.
    let bad = json!({"cluster.layout": "specific", "cluster.specific": [[[0], [1]], [[2], [9]]]});
    assert_eq!(
        err(opts(4, bad), 2),
        "layout specific names device 9 at [1][1][0], but the cluster has 4 devices (ids 0 to 3)"
    );
    let bad = json!({"cluster.layout": "specific", "cluster.specific": [[[0]], [["gpu:1"]]]});
    assert_eq!(
        err(opts(4, bad), 2),
        "cluster.specific[1][0][0] is \"gpu:1\", not a device of the cluster (an id or a name \
         like 'cpu:0')"
    );
}

#[test]
fn simulated_hosts_and_enumeration_order() {
    // cluster.py::get_device_list(prefer_row=False) on 2 workers x 2 devices: stage slices
    // [[0],[1]] and [[2],[3]]; the default (worker-major) keeps a replica inside a worker.
    let mut o = opts(4, json!({"cluster.device_place_prefer_intra_node": false}));
    o.hosts = Some((2, 2));
    assert_eq!(slices(&plan(2, o)), [[[0], [1]], [[2], [3]]]);
    let mut o = opts(4, json!({}));
    o.hosts = Some((2, 2));
    assert_eq!(slices(&plan(2, o)), [[[0], [2]], [[1], [3]]]);
    let cluster = |text: &str| {
        let o = json!({"batch": 8, "devices": "cpu:4", "cluster": text});
        TrainerOptions::from_json(&o).map(|o| o.hosts)
    };
    assert_eq!(cluster("2x2").unwrap(), Some((2, 2)));
    assert_eq!(
        cluster("2x2:a100").unwrap_err().to_string(),
        "cluster '2x2:a100': a hardware kind (':a100') is planned by 'weft plan --cluster' and \
         weft.plan, not compiled (give HOSTSxDEVICES, e.g. '2x2')"
    );
    let mut o = opts(4, json!({}));
    o.hosts = Some((3, 2));
    assert_eq!(
        err(o, 2),
        "cluster 3x2 has 6 devices, but devices cpu:4 has 4"
    );
}

#[test]
fn aware_row_needs_one_device_workers() {
    // cluster_test_with_aware.py: aware_row slices one-device workers.
    let extra = json!({"cluster.layout": "aware_row", "cluster.aware_row": 2});
    assert_eq!(
        err(opts(4, extra), 2),
        "layout aware_row needs one device per host; the cluster has 4 per host"
    );
    let idle = json!({"cluster.aware_row": 2});
    assert_eq!(
        err(opts(4, idle), 2),
        "cluster.aware_row is set but cluster.layout is 'auto'; it only takes effect with \
         cluster.layout='aware_row'"
    );
}

// ---- across processes: cluster.py device lists, aware_row, visible devices ----

fn free_port() -> u16 {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7);
    (0..2000)
        .map(|i| 20000 + (seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) + i) % 12000)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port")
}

/// `world` processes, `per_node` to a node, each compiling `stages` on `local` devices: every
/// process's plan and 3 losses.
fn processes(
    world: usize,
    per_node: usize,
    local: usize,
    stages: usize,
    extra: Value,
) -> Vec<(Value, Vec<f32>)> {
    let port = free_port();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let mut extra = extra.clone();
                extra["communication.timeout_s"] = json!(20);
                s.spawn(move || {
                    let mut o = opts(local, extra);
                    o.processes = Some(ProcessRank {
                        launcher: Launcher::Weft,
                        rank,
                        world,
                        local_rank: rank % per_node,
                        local_world: per_node,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        token: "t".into(),
                        launcher_fd: None,
                    });
                    let mut t = Trainer::compile(model(stages), o).unwrap();
                    (t.plan_json(), losses(&mut t))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn one_process(devices: usize, stages: usize, extra: Value) -> Vec<f32> {
    let mut t = Trainer::compile(model(stages), opts(devices, extra)).unwrap();
    losses(&mut t)
}

#[test]
fn prefer_intra_node_false_across_processes() {
    // cluster.py::get_device_list(prefer_row=False), 2 processes x 2 devices: stage slices
    // [[0],[1]] and [[2],[3]]; process 0 runs stage 0 of both replicas, process 1 stage 1.
    let extra = json!({"cluster.device_place_prefer_intra_node": false});
    let want = one_process(4, 2, json!({}));
    for (p, (plan, got)) in processes(2, 2, 2, 2, extra).iter().enumerate() {
        assert_eq!(slices(plan), [[[0], [1]], [[2], [3]]], "process {p}");
        assert_eq!(got, &want, "process {p}: losses equal one process's");
    }
}

#[test]
fn aware_row_from_the_launchers_hosts() {
    // cluster_test_with_aware.py::test_aware_row: four one-device workers on two machines,
    // slices of 2 consecutive workers: TaskGraph 0 on node 0's workers, TaskGraph 1 on node 1's.
    let extra = json!({"cluster.layout": "aware_row", "cluster.aware_row": 2});
    let want = one_process(4, 2, json!({}));
    for (p, (plan, got)) in processes(4, 2, 1, 2, extra).iter().enumerate() {
        assert_eq!(slices(plan), [[[0], [1]], [[2], [3]]], "process {p}");
        assert_eq!(plan["cluster"], "4 hosts x 1 cpu device", "process {p}");
        assert_eq!(got, &want, "process {p}: losses equal one process's");
    }
}

#[test]
fn run_visible_devices_limits_each_process() {
    // cluster_test_with_visible_devices.py: EPL_CLUSTER_RUN_VISIBLE_DEVICES=1 on workers of 2
    // devices: one device per worker.
    let extra = json!({"cluster.run_visible_devices": "1"});
    let want = one_process(2, 1, json!({}));
    for (p, (plan, got)) in processes(2, 2, 2, 1, extra.clone()).iter().enumerate() {
        assert_eq!(
            plan["batch"]["replicas"], 2,
            "process {p}: 2 processes x 1 device"
        );
        assert_eq!(got, &want, "process {p}");
    }
    let p = plan(1, opts(2, extra));
    assert_eq!(p["devices"], json!(["cpu:0"]));
    let bad = json!({"cluster.run_visible_devices": "2"});
    assert_eq!(
        err(opts(2, bad), 1),
        "cluster.run_visible_devices='2': device 2 is not one of this process's 2 devices \
         (indices 0 to 1)"
    );
}

// ---- config: config_test.py, config_env_test.py ----

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn config_defaults_match_epl_except_the_documented_ones() {
    // config_test.py::test_default_config. sparse_as_dense and clip_after_allreduce differ on
    // purpose (docs/EPL.md).
    let c = Config::default().to_json();
    let epl = [
        ("pipeline.num_micro_batch", json!(1)),
        ("pipeline.num_stages", json!(-1)),
        ("pipeline.strategy", json!("PreferBackward")),
        ("gradient_checkpoint.type", json!("")),
        ("gradient_checkpoint.end_taskgraph", json!(-1)),
        ("gradient_checkpoint.check_gradients", json!(false)),
        ("zero.level", json!("")),
        ("offload.level", json!("")),
        ("amp.level", json!("")),
        ("amp.debug_log", json!(false)),
        ("amp.loss_scale", json!("dynamic")),
        ("optimizer.num_apply_group", json!(1)),
        ("cluster.device_place_prefer_intra_node", json!(true)),
        ("cluster.run_visible_devices", json!("")),
        ("cluster.colocate_split_and_replicate", json!(false)),
        ("communication.num_communicators", json!(2)),
        ("communication.max_splits", json!(5)),
        ("communication.fp16", json!(false)),
        ("communication.fp16_scale", json!(128)),
        ("communication.gradients_reduce_method", json!("mean")),
        ("io.slicing", json!(false)),
        ("io.unbalanced_io_slicing", json!(false)),
        ("io.drop_last_files", json!(false)),
        ("auto.auto_parallel", json!(false)),
    ];
    for (key, value) in epl {
        assert_eq!(c[key], value, "{key}");
    }
    assert_eq!(c["communication.sparse_as_dense"], true, "EPL: false");
    assert_eq!(c["communication.clip_after_allreduce"], true, "EPL: false");
}

#[test]
fn config_from_dict_env_and_epl_aliases() {
    // config_test.py::test_config_dict / test_config_env / test_gc_type_from_env,
    // config_env_test.py: env values, then dict values win.
    let explicit = vec![("pipeline.num_micro_batch".to_string(), json!(8))];
    let vars = env(&[
        ("EPL_PIPELINE_NUM_MICRO_BATCH", "4"),
        ("EPL_GRADIENT_CHECKPOINT_TYPE", "collection"),
        ("EPL_COMMUNICATION_FP16", "True"),
    ]);
    let c = Config::from_sources(&explicit, &vars).unwrap();
    assert_eq!(c.pipeline.num_micro_batch, 8);
    assert_eq!(c.gradient_checkpoint.kind.as_str(), "collection");
    assert!(c.communication.fp16);
    // WEFT_ wins over EPL_, and the plan says which was read.
    let vars = env(&[
        ("EPL_PIPELINE_NUM_MICRO_BATCH", "4"),
        ("WEFT_PIPELINE_NUM_MICRO_BATCH", "2"),
    ]);
    let c = Config::from_sources(&[], &vars).unwrap();
    assert_eq!(c.pipeline.num_micro_batch, 2);
    let mut o = opts(2, json!({}));
    o.config = c;
    let p = plan(1, o);
    assert_eq!(
        p["config_env"],
        json!([
            "pipeline.num_micro_batch from WEFT_PIPELINE_NUM_MICRO_BATCH \
             (EPL_PIPELINE_NUM_MICRO_BATCH is also set and ignored: WEFT_ wins)"
        ])
    );
}

#[test]
fn config_errors_name_the_key() {
    // config_test.py::test_invalid_reduce_method; unknown keys and variables are errors
    // (EPL ignores unknown env names; weft refuses WEFT_* ones: docs/EPL.md).
    let bad = |pairs: &[(&str, Value)], vars: &[(&str, &str)]| {
        let explicit: Vec<(String, Value)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Config::from_sources(&explicit, &env(vars))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        bad(
            &[("communication.gradients_reduce_method", json!("max"))],
            &[]
        ),
        "communication.gradients_reduce_method must be one of 'mean', 'sum' (case-insensitive), \
         got \"max\""
    );
    assert_eq!(
        bad(&[], &[("WEFT_PIPELIN_NUM_MICRO_BATCH", "4")]),
        "unknown environment variable 'WEFT_PIPELIN_NUM_MICRO_BATCH'; did you mean \
         'WEFT_PIPELINE_NUM_MICRO_BATCH'?"
    );
    assert_eq!(
        bad(&[], &[("EPL_ZERO_LEVL", "v1")]),
        "unknown environment variable 'EPL_ZERO_LEVL'; did you mean 'EPL_ZERO_LEVEL'?"
    );
    // The CLI's --set reads text by the key's type: "1" is a string for a string key.
    let value = weft_core::config::value_from_text("cluster.run_visible_devices", "1");
    assert_eq!(value.unwrap(), json!("1"));
    let value = weft_core::config::value_from_text("pipeline.num_micro_batch", "4");
    assert_eq!(value.unwrap(), json!(4));
}

// ---- zero_test.py, amp_test.py ----

#[test]
fn zero_levels_case_insensitive_and_strict() {
    // zero_test.py::test_zero_v0 / test_zero_v1: the level is case-insensitive; EPL disables
    // ZeRO for any other value, weft refuses it (docs/EPL.md).
    for level in ["V0", "v1"] {
        let p = plan(1, opts(2, json!({"zero.level": level})));
        assert_eq!(p["config"]["zero.level"], level.to_lowercase());
    }
    let mut c = Config::default();
    let e = c.set("zero.level", &json!("v3")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "zero.level must be one of '', 'v0', 'v1', 'v2' (case-insensitive), got \"v3\""
    );
}

#[test]
fn amp_fixed_loss_scale_means_fp16() {
    // amp_test.py::test_amp_fix: {amp.level: O1, amp.loss_scale: 128} is fp16 scaled by 128.
    let extra = json!({"amp.level": "O1", "amp.loss_scale": 128});
    let mut t = Trainer::compile(model(1), opts(1, extra)).unwrap();
    let p = t.plan_json();
    assert_eq!(p["amp"]["dtype"], "fp16");
    assert_eq!(p["warnings"], json!([]));
    assert_eq!(t.step(&batch(0)).unwrap().loss_scale, Some(128.0));
    // A scale bf16 cannot use, or AMP keys without AMP, are named, never dropped.
    let idle = json!({"amp.level": "O1", "amp.dtype": "bf16", "amp.loss_scale": 128});
    assert_eq!(
        plan(1, opts(1, idle))["warnings"],
        json!([
            "amp.loss_scale=128 has no effect under amp.dtype='bf16' (bf16 has f32's range and \
             is never scaled); set amp.dtype='fp16' to scale the loss, or drop amp.loss_scale"
        ])
    );
    let off = json!({"amp.loss_scale": 128});
    assert_eq!(
        plan(1, opts(1, off))["warnings"],
        json!(["amp.loss_scale=128 has no effect: mixed precision is off (set amp.level='o1')"])
    );
}

// ---- auto_test.py ----

/// `blocks` transformer blocks under one TaskGraph, a final layer norm and a `vocab`-token
/// tied head (GPT's shape).
fn stack(blocks: usize, vocab: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let idx = b
        .input("idx", Shape(vec![Dim::Batch(1), Dim::Fixed(T)]), DType::I32)
        .unwrap();
    let tgt = b
        .input("targets", Shape(vec![Dim::Batch(T)]), DType::I32)
        .unwrap();
    let init = Init::Normal {
        mean: 0.0,
        std: 0.3,
    };
    let wte = p(&mut b, "wte", &[vocab, C], init);
    let mut x = op(&mut b, Op::Embedding, &[wte, idx]);
    for i in 0..blocks {
        x = block(&mut b, x, i);
    }
    let lw = p(&mut b, "ln_f.weight", &[C], Init::Ones);
    let lb = p(&mut b, "ln_f.bias", &[C], Init::Zeros);
    let x = op(&mut b, Op::LayerNorm { eps: 1e-5 }, &[x, lw, lb]);
    let shape = b.reshape_dims(x, &[-1, C as i64]).unwrap();
    let x = op(&mut b, Op::Reshape { shape }, &[x]);
    let mm = Op::MatMul {
        trans_a: false,
        trans_b: true,
    };
    let logits = op(&mut b, mm, &[x, wte]);
    let loss = mean_cross_entropy(&mut b, logits, tgt);
    b.finish(loss).unwrap()
}

#[test]
fn auto_stages_deal_repeated_blocks_out_evenly() {
    // auto_test.py::test_auto_pipeline_repeated (8 blocks, 4 stages: {0:[0,1], 1:[2,3], ...})
    // and test_auto_pipeline_repeated3 (12 blocks: three per stage), even with a head heavy
    // enough for the cost model to predict a faster cut (it is offered, not taken).
    for (blocks, per) in [(8, 2), (12, 3)] {
        let auto = json!({"auto.auto_parallel": true, "pipeline.num_stages": 4});
        let t = Trainer::compile(stack(blocks, 4096), opts(4, auto)).unwrap();
        let p = t.plan_json();
        let text = p["auto_stages"].as_str().unwrap();
        assert!(text.contains("by repeated_blocks"), "{text}");
        for i in 0..blocks {
            assert_eq!(
                p["auto_stage_blocks"][format!("h.{i}")],
                json!([i / per]),
                "{text}"
            );
        }
        let cost = json!({"auto.auto_parallel": true, "pipeline.num_stages": 4,
                          "auto.stage_policy": "cost_model"});
        let t = Trainer::compile(stack(blocks, 4096), opts(4, cost)).unwrap();
        let other = t.plan_json();
        assert!(
            other["auto_stages"]
                .as_str()
                .unwrap()
                .contains("by cost_model")
        );
    }
}

// ---- scheduler_test.py ----

#[test]
fn prefer_backward_optimizer_orders_4_stages_by_6_micro_batches() {
    // scheduler_test.py (PreferBackwardOptimizer, 4 stages x 6 micro-batches): every stage
    // runs its forwards and its backwards in micro-batch order, a micro-batch's forward before
    // its backward, a non-last stage s warms up with one forward more than 1F1B's 4 - s (the
    // last stage strictly alternates), and the update comes last.
    let o = options(4, 6, "PreferBackwardOptimizer", json!({}));
    let mut o = o;
    o.batch = 24;
    let p = plan(4, o);
    for s in 0..4usize {
        let list: Vec<String> =
            serde_json::from_value(p["schedule"][format!("cpu:{s}")].clone()).unwrap();
        let at = |w: &str| list.iter().position(|x| x == w).unwrap();
        for m in 0..6 {
            assert!(
                at(&format!("F{m}")) < at(&format!("B{m}")),
                "stage {s}: {list:?}"
            );
            if m > 0 {
                assert!(
                    at(&format!("F{}", m - 1)) < at(&format!("F{m}")),
                    "{list:?}"
                );
                assert!(
                    at(&format!("B{}", m - 1)) < at(&format!("B{m}")),
                    "{list:?}"
                );
            }
        }
        let warm = list.iter().take_while(|w| w.starts_with('F')).count();
        let want = if s == 3 { 1 } else { 5 - s };
        assert_eq!(warm, want, "stage {s}: {list:?}");
        assert_eq!(list.last().map(String::as_str), Some("STEP"), "stage {s}");
        assert_eq!(
            list.len(),
            13,
            "stage {s}: 6 F, 6 B and the update: {list:?}"
        );
    }
}

// ---- collections_test.py ----

#[test]
fn outputs_are_concatenated_over_replicas_and_micro_batches() {
    // collections_test.py (GLOBAL_CONCAT): a step's output holds every row of the global
    // batch, micro-batches then replicas in batch order, as one device computes it.
    let mut one = Trainer::compile(model(1), opts(1, json!({}))).unwrap();
    let want = one.step(&batch(0)).unwrap().outputs.remove(0);
    let mut dp = Trainer::compile(model(1), options(4, 2, "PreferBackward", json!({}))).unwrap();
    let got = dp.step(&batch(0)).unwrap().outputs.remove(0);
    assert_eq!((got.0.as_str(), &got.1), ("logits", &vec![BATCH * T, V]));
    assert_eq!(want.1, got.1);
    assert!(
        max_diff(&want.2, &got.2) < 1e-5,
        "{}",
        max_diff(&want.2, &got.2)
    );
}
