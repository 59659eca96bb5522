//! The session's device-memory path (an engine's `DeviceCommunicator`s carrying pipeline sends
//! and the fused gradient all-reduce, gradients handed over and given back) must train exactly
//! like the host path. Run here with `HostBuffers`, the host engine behind the device
//! interface, so it is checked on every machine; a GPU engine plugs in the same way.

mod common;

use common::*;
use weft_core::collectives::{
    DeviceCommunicator, DeviceCommunicators, GroupSpec, HostBuffers, LocalGroup,
};
use weft_core::exec::CpuBackend;
use weft_core::session::Engine;

/// Device groups from in-process host groups: one `LocalGroup` per spec, wrapped.
fn host_groups(spec: &GroupSpec<'_>) -> weft_core::Result<DeviceCommunicators<HostData>> {
    assert_eq!(
        spec.members.len(),
        spec.ranks.len(),
        "one process hosts all"
    );
    let comms = LocalGroup::with_ranks(spec.ranks, spec.timeout)?;
    Ok(Some(HostBuffers::wrap(comms)))
}

fn compile_on_device_groups(model: Graph, opts: TrainerOptions) -> Trainer {
    let backend = |_: usize, threads: usize| Ok(CpuBackend::new(threads));
    let engine = Engine {
        backend: &backend,
        groups: Some(&host_groups),
    };
    Trainer::compile_on(model, opts, &engine).unwrap()
}

/// A vocabulary this large makes the gradients span two 1 MB buckets.
const BIG_VOCAB: usize = 20_000;

/// Train `layout` on host communicators and on device groups: identical losses and every
/// replica's parameters identical bit for bit; `engines` is what the device run reports.
fn assert_same(
    name: &str,
    (stages, devices, micro): (usize, usize, usize),
    extra: serde_json::Value,
    engines: &[(&str, &str)],
) {
    let opts = || options(devices, micro, "PreferBackward", extra.clone());
    let vocab = if name.contains("buckets") {
        BIG_VOCAB
    } else {
        V
    };
    let model = || model_vocab(stages, false, 0, vocab);
    let mut t = Trainer::compile(model(), opts()).unwrap();
    let host: Vec<f32> = (0..5).map(|s| t.step(&batch(s)).unwrap().loss).collect();
    let mut d = compile_on_device_groups(model(), opts());
    let got: Vec<f32> = (0..5).map(|s| d.step(&batch(s)).unwrap().loss).collect();
    let report: Vec<(&str, &str)> = d.exchange_engines().into_iter().collect();
    assert_eq!(report, engines, "{name}: engines");
    // The plan says what moves in device memory; a host-only layout says nothing of it.
    let said: Vec<String> = engines
        .iter()
        .filter(|(_, e)| *e != "host")
        .map(|(what, e)| format!("{what} over {e}"))
        .collect();
    let line = format!("exchange: {} (in device memory)", said.join(", "));
    assert_eq!(
        d.plan_text().contains(&line),
        !said.is_empty(),
        "{name}: {line}"
    );
    assert!(!t.plan_text().contains("exchange:"), "{name}: host run");
    assert_same_training(name, (&host, &t), (&got, &d));
}

#[test]
fn data_parallel_gradients_reduce_in_device_groups() {
    let engines = [("gradients", "host-buffers")];
    assert_same("DP2", (1, 2, 1), serde_json::json!({}), &engines);
    // Two buckets over two channels, so buckets go round-robin to two threads.
    let two = serde_json::json!({
        "communication.bucket_size_mb": 1, "communication.num_communicators": 2
    });
    assert_same("DP2 two buckets", (1, 2, 2), two, &engines);
    // EPL's local clipping: the whole local gradient first, handed over after backward.
    let local = serde_json::json!({"communication.clip_after_allreduce": false});
    assert_same("DP2 local clip", (1, 2, 1), local, &engines);
}

#[test]
fn pipeline_sends_and_gradients_use_device_groups() {
    let both = [("gradients", "host-buffers"), ("pipeline", "host-buffers")];
    assert_same("PP2", (2, 2, 2), serde_json::json!({}), &both[1..]);
    assert_same("DP2 x PP2", (2, 4, 2), serde_json::json!({}), &both);
    // Interleaved stages: each device reduces two stages' buckets over their own channels.
    let v2 = serde_json::json!({"pipeline.num_virtual_stages": 2});
    assert_same("DP2 x PP2 interleaved v2", (4, 4, 4), v2, &both);
    // bf16 activations cross stages in their own dtype.
    let amp = serde_json::json!({"amp.level": "O1", "amp.dtype": "bf16"});
    assert_same("PP2 bf16", (2, 2, 2), amp, &both[1..]);
}

#[test]
fn host_reduction_stays_where_device_groups_cannot_serve() {
    // fp16 compression encodes on the host: the gradients keep the host communicators.
    let fp16 = serde_json::json!({"communication.fp16": true});
    assert_same("DP2 fp16", (1, 2, 1), fp16, &[("gradients", "host")]);
}

#[test]
fn a_device_group_with_the_wrong_handle_count_is_refused() {
    let backend = |_: usize, threads: usize| Ok(CpuBackend::new(threads));
    let short = |spec: &GroupSpec<'_>| -> weft_core::Result<DeviceCommunicators<HostData>> {
        let mut comms = LocalGroup::with_ranks(spec.ranks, spec.timeout)?;
        comms.pop();
        Ok(Some(HostBuffers::wrap(comms)))
    };
    let engine = Engine {
        backend: &backend,
        groups: Some(&short),
    };
    let opts = options(2, 1, "PreferBackward", serde_json::json!({}));
    let err = Trainer::compile_on(model(1), opts, &engine).err().unwrap();
    assert_eq!(
        err.to_string(),
        "internal error (a weft bug): the gradients device group made 1 handles for 2 members"
    );
    // The trait object is usable directly, too.
    let comms = HostBuffers::wrap(LocalGroup::new(1, std::time::Duration::from_secs(1)));
    let c: &dyn DeviceCommunicator<HostData> = comms[0].as_ref();
    let mut x = HostData::F32(vec![1.0, 2.0]);
    c.all_reduce(&mut [&mut x], weft_core::collectives::ReduceOp::Sum)
        .unwrap();
    assert_eq!(x, HostData::F32(vec![1.0, 2.0]));
}
