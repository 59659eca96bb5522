//! Data parallelism across processes: threads stand in for processes, each with its own
//! `Trainer` joined through a real TCP store on loopback. Every process must report, bit for
//! bit, the losses and weights of one process running the same replicas as threads.

mod common;
use common::*;
use std::net::TcpListener;
use weft_core::process::{Launcher, ProcessRank};

/// A port nothing listens on right now (ephemeral, so parallel tests do not collide).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rank(rank: usize, world: usize, port: u16) -> ProcessRank {
    ProcessRank {
        launcher: Launcher::Weft,
        rank,
        world,
        local_rank: rank,
        local_world: world,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        token: "test-token".into(),
    }
}

/// `processes` trainers of `local` devices each, 3 steps; every process's `run`.
fn train_processes(
    processes: usize,
    local: usize,
    extra: serde_json::Value,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let port = free_port();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..processes)
            .map(|r| {
                let extra = extra.clone();
                s.spawn(move || {
                    let mut opts = options(local, 1, "PreferBackward", extra);
                    opts.processes = Some(rank(r, processes, port));
                    let mut t = Trainer::compile(model(1), opts).unwrap();
                    let losses: Vec<f32> =
                        (0..3).map(|s| t.step(&batch(s)).unwrap().loss).collect();
                    let w = t
                        .parameter("h.3.out.weight")
                        .unwrap()
                        .as_f32()
                        .unwrap()
                        .to_vec();
                    (losses, w)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn in_process(devices: usize, extra: serde_json::Value) -> (Vec<f32>, Vec<f32>) {
    let mut t = Trainer::compile(model(1), options(devices, 1, "PreferBackward", extra)).unwrap();
    let losses: Vec<f32> = (0..3).map(|s| t.step(&batch(s)).unwrap().loss).collect();
    let w = t
        .parameter("h.3.out.weight")
        .unwrap()
        .as_f32()
        .unwrap()
        .to_vec();
    (losses, w)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn two_and_four_processes_match_one_process_bit_for_bit() {
    for (processes, local) in [(2, 1), (4, 1), (2, 2)] {
        let expected = in_process(processes * local, serde_json::json!({}));
        let got = train_processes(processes, local, serde_json::json!({}));
        for (p, (losses, w)) in got.iter().enumerate() {
            assert_eq!(
                bits(losses),
                bits(&expected.0),
                "{processes}x cpu:{local}: process {p} losses"
            );
            assert_eq!(
                bits(w),
                bits(&expected.1),
                "{processes}x cpu:{local}: process {p} weights and logits"
            );
        }
        // Training really moved: the check is not between two untrained models.
        assert_ne!(expected.0[0], expected.0[2]);
    }
}

#[test]
fn pipeline_stages_across_processes_are_refused() {
    let port = free_port();
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|r| {
                s.spawn(move || {
                    let mut opts = options(2, 2, "PreferBackward", serde_json::json!({}));
                    opts.processes = Some(rank(r, 2, port));
                    let err = Trainer::compile(model(2), opts).err().unwrap();
                    assert_eq!(err.code(), "WEFT_UNSUPPORTED");
                    err.to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        errors[0].starts_with(
            "pipeline stages across processes is not yet supported: the model has 2 stages"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn processes_started_with_different_flags_are_told_which_differs() {
    let port = free_port();
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|r| {
                s.spawn(move || {
                    let mut opts = options(1, 1, "PreferBackward", serde_json::json!({}));
                    opts.processes = Some(rank(r, 2, port));
                    opts.seed = 3 + r as u64;
                    let err = Trainer::compile(model(1), opts).err().unwrap();
                    assert_eq!(err.code(), "WEFT_CONFIG");
                    err.to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        errors[0],
        "process 1 has seed 4 but process 0 has 3: every process of a job must be started with \
         the same flags"
    );
}
