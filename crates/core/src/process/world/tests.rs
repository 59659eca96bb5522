//! Joining a job: torchrun's port left alone, and the store's token policy. Loopback only.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use super::*;
use crate::process::{Launcher, discover};

fn env(pairs: &[(&str, String)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Every rank of a `world`-process job joining concurrently, as processes would.
fn join_all(ranks: Vec<ProcessRank>) -> Vec<Result<ProcessWorld>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .iter()
            .map(|r| s.spawn(move || ProcessWorld::join(r, Duration::from_secs(20), false)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A port held by someone else (torchrun's store) whose next port is free.
fn held_port() -> TcpListener {
    loop {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return held;
        }
    }
}

#[test]
fn under_torchrun_the_store_leaves_master_port_to_torchrun() {
    let held = held_port();
    let port = held.local_addr().unwrap().port();
    let ranks: Vec<ProcessRank> = (0..2)
        .map(|r| {
            let vars = env(&[
                ("RANK", r.to_string()),
                ("WORLD_SIZE", "2".into()),
                ("MASTER_ADDR", "127.0.0.1".into()),
                ("MASTER_PORT", port.to_string()),
                ("TORCHELASTIC_RUN_ID", "job".into()),
                ("WEFT_STORE_TOKEN", "t".into()),
            ]);
            discover(&vars).unwrap().unwrap()
        })
        .collect();
    assert_eq!(ranks[0].launcher, Launcher::Torchrun);
    for world in join_all(ranks) {
        let world = world.unwrap();
        assert_eq!(world.rank.master_port, port + 1);
        assert!(world.warnings.is_empty());
    }
    drop(held);
}

fn tokenless(addr: &str) -> ProcessRank {
    let vars = env(&[
        ("RANK", "1".into()),
        ("WORLD_SIZE", "2".into()),
        ("MASTER_ADDR", addr.into()),
        ("MASTER_PORT", "29500".into()),
        ("TORCHELASTIC_RUN_ID", "job".into()),
    ]);
    discover(&vars).unwrap().unwrap()
}

#[test]
fn without_a_token_a_store_off_loopback_is_refused_unless_insecure() {
    let rank = tokenless("192.0.2.7");
    let addr: SocketAddr = "192.0.2.7:29501".parse().unwrap();
    let err = ProcessWorld::join(&rank, Duration::from_secs(1), false).unwrap_err();
    assert_eq!(err.code(), "WEFT_CONFIG");
    assert_eq!(
        err.to_string(),
        "WEFT_STORE_TOKEN is not set (started by torchrun) and the store at 192.0.2.7:29501 is \
         not on loopback: anyone who reaches it could read and change the job's keys; set \
         WEFT_STORE_TOKEN to the same secret on every rank (README: Security), or \
         communication.insecure_store=true to accept the risk"
    );
    assert_eq!(
        store_security(&rank, addr, true).unwrap(),
        vec![
            "communication.insecure_store=true: the store at 192.0.2.7:29501 accepts anyone \
             who reaches it, without a token"
                .to_string()
        ]
    );
}

#[test]
fn without_a_token_a_loopback_job_runs_with_a_warning() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let ranks: Vec<ProcessRank> = (0..2)
        .map(|r| ProcessRank {
            rank: r,
            master_port: port,
            ..tokenless("127.0.0.1")
        })
        .collect();
    for world in join_all(ranks) {
        assert_eq!(
            world.unwrap().warnings,
            vec![format!(
                "WEFT_STORE_TOKEN is not set (started by torchrun): the store at \
                 127.0.0.1:{port} accepts any process of this host; set WEFT_STORE_TOKEN to \
                 the same secret on every rank"
            )]
        );
    }
}
