//! The exact message (and key) of every error `slice` reports.

use super::{replicate, split};
use crate::config::Config;
use crate::error::Error;
use crate::ir::TaskGraph;
use crate::strategy::{Cluster, DeviceKind, GlobalDevice, Host, Layout, slice, slice_for_config};

fn gpus(hosts: usize, per_host: usize) -> Cluster {
    Cluster::uniform(DeviceKind::Cuda, hosts, per_host).unwrap()
}

/// `(key, message)` of the error slicing `tgs` on `cluster` with `layout` gives.
fn error(cluster: &Cluster, tgs: &[TaskGraph], layout: Layout) -> (String, String) {
    match slice(cluster, tgs, &layout, true).unwrap_err() {
        e @ Error::Config { .. } => {
            let Error::Config { key, .. } = &e else {
                unreachable!()
            };
            (key.clone(), e.to_string())
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

fn ids(slices: &[&[&[u32]]]) -> Layout {
    let tg = |t: &[&[u32]]| {
        t.iter()
            .map(|r| r.iter().map(|&d| GlobalDevice(d)).collect())
            .collect()
    };
    Layout::Specific(slices.iter().map(|t| tg(t)).collect())
}

#[test]
fn no_taskgraphs() {
    assert_eq!(
        error(&gpus(1, 2), &[], Layout::Auto),
        (
            "strategy".into(),
            "there are no TaskGraphs to place on devices; build the model first".into()
        )
    );
}

#[test]
fn zero_device_count() {
    let tgs = [replicate("a", 1), replicate("b", 0)];
    assert_eq!(
        error(&gpus(1, 2), &tgs, Layout::All).1,
        "TaskGraph 1 'b' has device_count 0; it must be >= 1"
    );
}

#[test]
fn more_stages_than_devices() {
    let tgs = [replicate("a", 1), replicate("b", 1), replicate("c", 1)];
    assert_eq!(
        error(&gpus(1, 2), &tgs, Layout::Auto),
        (
            "devices".into(),
            "3 TaskGraphs (pipeline stages) need at least 3 devices, but the cluster has 2 (1 \
             host x 2 cuda devices)"
                .into()
        )
    );
}

#[test]
fn indivisible_auto() {
    let tgs = [replicate("a", 2), split("b", 2), replicate("c", 1)];
    assert_eq!(
        error(&gpus(2, 4), &tgs, Layout::Auto),
        (
            "devices".into(),
            "8 devices cannot be cut into replicas of 5 devices (the sum of the TaskGraphs' \
             device counts 2 + 2 + 1); use a multiple of 5 devices"
                .into()
        )
    );
}

#[test]
fn all_ignores_device_counts_and_stage_counts() {
    // Colocated TaskGraphs share every device, so even more stages than devices is fine.
    let tgs = [replicate("a", 4), split("b", 4), replicate("c", 4)];
    let s = slice(&gpus(1, 2), &tgs, &Layout::All, true).unwrap();
    assert_eq!(s.num_replicas, 2);
    assert!(
        s.taskgraphs
            .iter()
            .all(|vd| vd.replicas == s.taskgraphs[0].replicas)
    );
}

#[test]
fn specific_taskgraph_count() {
    let tgs = [replicate("a", 1), replicate("b", 1)];
    assert_eq!(
        error(&gpus(1, 4), &tgs, ids(&[&[&[0]]])),
        (
            "cluster.layout".into(),
            "layout specific makes 1 slice, but the model has 2 TaskGraphs; each TaskGraph \
             takes one slice"
                .into()
        )
    );
}

#[test]
fn specific_without_replicas() {
    let tgs = [replicate("a", 1)];
    assert_eq!(
        error(&gpus(1, 4), &tgs, ids(&[&[]])).1,
        "layout specific gives TaskGraph 0 'a' no replicas"
    );
}

#[test]
fn specific_device_out_of_range() {
    let tgs = [replicate("a", 1)];
    assert_eq!(
        error(&gpus(1, 4), &tgs, ids(&[&[&[0], &[4]]])).1,
        "layout specific names device 4 at [0][1][0], but the cluster has 4 devices (ids 0 to 3)"
    );
}

#[test]
fn specific_device_twice_in_a_taskgraph() {
    let tgs = [replicate("a", 1), replicate("b", 2)];
    assert_eq!(
        error(&gpus(2, 2), &tgs, ids(&[&[&[0]], &[&[3, 3]]])).1,
        "layout specific uses device 3 (host1/cuda:1) twice in TaskGraph 1 'b'"
    );
    // The same device in two TaskGraphs is allowed (EPL's colocation does exactly that).
    let shared = ids(&[&[&[0]], &[&[0, 1]]]);
    assert_eq!(
        slice(&gpus(1, 2), &tgs, &shared, true)
            .unwrap()
            .num_replicas,
        1
    );
}

#[test]
fn specific_replica_counts_differ() {
    let tgs = [replicate("a", 1), replicate("b", 1)];
    assert_eq!(
        error(&gpus(1, 4), &tgs, ids(&[&[&[0], &[1]], &[&[2]]])).1,
        "layout specific gives TaskGraph 0 'a' 2 replicas but TaskGraph 1 'b' 1; every \
         TaskGraph needs the same replica count"
    );
}

#[test]
fn specific_replica_size_differs_from_device_count() {
    let tgs = [split("a", 2)];
    assert_eq!(
        error(&gpus(1, 4), &tgs, ids(&[&[&[0, 1], &[2]]])).1,
        "layout specific gives replica 1 of TaskGraph 0 'a' 1 device, but its device_count is 2"
    );
}

#[test]
fn aware_row_slice_count_differs_from_taskgraphs() {
    let hosts = ["a:1", "b:1", "a:2", "b:2"]
        .map(|n| Host::new(n, 1))
        .to_vec();
    let cluster = Cluster::new(DeviceKind::Cuda, hosts).unwrap();
    assert_eq!(
        error(&cluster, &[replicate("only", 1)], Layout::AwareRow(2)),
        (
            "cluster.layout".into(),
            "layout aware_row(2) makes 2 slices, but the model has 1 TaskGraph; each TaskGraph \
             takes one slice"
                .into()
        )
    );
    let tgs = [replicate("a", 1), replicate("b", 2)];
    assert_eq!(
        error(&cluster, &tgs, Layout::AwareRow(2)).1,
        "layout aware_row gives replica 0 of TaskGraph 1 'b' 1 device, but its device_count is 2"
    );
}

#[test]
fn slice_for_config_reads_layout_and_order() {
    let tgs = [replicate("a", 1), replicate("b", 1)];
    let mut config = Config::default();
    config.cluster.device_place_prefer_intra_node = false;
    let s = slice_for_config(&gpus(2, 2), &tgs, &config).unwrap();
    let first = |t: usize| s.taskgraphs[t].replicas.clone();
    assert_eq!(first(0), [[GlobalDevice(0)], [GlobalDevice(1)]]);
    assert_eq!(first(1), [[GlobalDevice(2)], [GlobalDevice(3)]]);
    config.cluster.colocate_split_and_replicate = true;
    let s = slice_for_config(&gpus(2, 2), &tgs, &config).unwrap();
    assert_eq!((s.layout.clone(), s.num_replicas), (Layout::All, 4));
}
