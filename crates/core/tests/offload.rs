//! Offload (`offload.level='v0'`): parameters and optimizer state live in host memory and each
//! program fetches the parameters it reads. Training is bit-identical to keeping them on the
//! device (alone, with DP, ZeRO and pipeline stages); the device holds only the parameters in
//! use; the host pool holds the rest; the plan predicts both.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_core::session::Trainer;

fn offload() -> Value {
    json!({"offload.level": "v0"})
}

fn run(stages: usize, devices: usize, micro: usize, extra: Value) -> (Vec<f32>, Trainer) {
    train_with(stages, devices, micro, "PreferBackward", extra)
}

#[test]
fn offloaded_training_is_bit_identical() {
    for (stages, devices, micro, extra) in [
        (1, 1, 1, json!({})),
        (1, 2, 2, json!({})),
        (2, 4, 4, json!({})),
        (1, 2, 1, json!({"zero.level": "v1"})),
    ] {
        let (plain, pt) = run(stages, devices, micro, extra.clone());
        let mut with = extra.clone();
        with["offload.level"] = json!("v0");
        let (got, t) = run(stages, devices, micro, with);
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

#[test]
fn the_device_keeps_only_parameters_in_use_and_the_plan_predicts_both_pools() {
    let (_, plain) = run(1, 1, 1, json!({}));
    let (_, off) = run(1, 1, 1, offload());
    let (pm, om) = (plain.memory_json(), off.memory_json());
    let (p, o) = (&pm["cpu:0"], &om["cpu:0"]);
    let params = p["measured"]["params"].as_u64().unwrap();
    let state = p["measured"]["optimizer_state"].as_u64().unwrap();
    assert_eq!(
        o["measured"]["host"].as_u64().unwrap(),
        params + state,
        "{o}"
    );
    assert_eq!(o["measured"]["optimizer_state"], 0);
    let fetched = o["measured"]["params"].as_u64().unwrap();
    assert!(fetched < params, "{fetched} vs {params}");
    let device = |m: &Value| m["measured"]["peak_total"].as_u64().unwrap();
    assert!(device(o) < device(p), "{o} vs {p}");
    for key in ["params", "optimizer_state", "activations", "grads", "host"] {
        assert_eq!(o["measured"][key], o["predicted"][key], "{key}: {o}");
    }
    assert_eq!(o["measured"]["peak_total"], o["predicted"]["total"], "{o}");
}

#[test]
fn each_program_fetches_a_parameter_once_before_its_first_reader_and_frees_it_after_its_last() {
    use weft_core::exec::{Action, Program};
    let t = Trainer::compile(model(1), options(1, 1, "PreferBackward", offload())).unwrap();
    let g = t.compiled();
    let stages = weft_core::passes::assign_stages(g).unwrap();
    let program = Program::build(g, &stages, 0, true);
    let is_param = |id| matches!(g.node(id).op, weft_core::ir::Op::Parameter { .. });
    for list in [&program.forward, &program.backward, &program.eval] {
        let reads = |a: &Action, p| match a {
            Action::Compute(x) => g.node(*x).inputs.contains(&p),
            Action::Send { node, .. } => *node == p,
            _ => false,
        };
        let mut checked = 0;
        for p in g.ids().filter(|&id| is_param(id)) {
            let readers: Vec<usize> = (0..list.len()).filter(|&i| reads(&list[i], p)).collect();
            let fetches: Vec<usize> = (0..list.len())
                .filter(|&i| list[i] == Action::Fetch(p))
                .collect();
            let frees: Vec<usize> = (0..list.len())
                .filter(|&i| list[i] == Action::Free(p))
                .collect();
            if readers.is_empty() {
                assert!(
                    fetches.is_empty() && frees.is_empty(),
                    "{p} fetched but unread"
                );
                continue;
            }
            assert_eq!(fetches.len(), 1, "{p}: {fetches:?}");
            assert_eq!(frees.len(), 1, "{p}: {frees:?}");
            assert!(
                fetches[0] < readers[0] && frees[0] > *readers.last().unwrap(),
                "{p}"
            );
            checked += 1;
        }
        assert!(checked > 0);
    }
}
