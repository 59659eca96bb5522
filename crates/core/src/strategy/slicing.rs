//! EPL's VirtualDevice slicing: every TaskGraph gets a VirtualDevice, a list of replicas, each a
//! list of devices; the number of replicas is the data-parallel degree left over once every
//! TaskGraph has its `device_count` devices per replica.

use super::aware::aware_row;
use super::cluster::{Cluster, GlobalDevice};
use super::layout::{Layout, Slices};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ir::{Strategy, TaskGraph};
use std::collections::HashSet;

/// The devices of one TaskGraph: `replicas[r][i]` is device `i` of replica `r`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDevice {
    pub name: String,
    pub strategy: Strategy,
    /// The TaskGraph's `device_count` as the scope gave it (layout `all` ignores it).
    pub device_count: usize,
    pub replicas: Vec<Vec<GlobalDevice>>,
}

impl VirtualDevice {
    pub fn num_replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Every device, replica by replica (EPL's `all_devices`).
    pub fn all_devices(&self) -> Vec<GlobalDevice> {
        self.replicas.iter().flatten().copied().collect()
    }

    /// Device `index` of replica `replica` (EPL's `get_device`).
    pub fn device(&self, replica: usize, index: usize) -> GlobalDevice {
        self.replicas[replica][index]
    }
}

/// Where every TaskGraph runs. All TaskGraphs have `num_replicas` replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slicing {
    pub layout: Layout,
    /// The cluster the device ids refer to; `aware_row` reorders its hosts.
    pub cluster: Cluster,
    /// `host_order[new] = old` host index (the identity except for `aware_row`).
    pub host_order: Vec<usize>,
    /// One per TaskGraph, in TaskGraph order.
    pub taskgraphs: Vec<VirtualDevice>,
    pub num_replicas: usize,
}

impl Slicing {
    /// The devices of TaskGraph `taskgraph` that host `host` drives. As in EPL, the positions
    /// come from the first TaskGraph (the one whose hosts build the graph) and are reused for
    /// every other TaskGraph, so a host drives the same replicas in every stage.
    pub fn local_devices(&self, taskgraph: usize, host: usize) -> Vec<GlobalDevice> {
        let first = self.taskgraphs[0].all_devices();
        let positions = first.iter().enumerate();
        let positions = positions.filter(|(_, d)| self.cluster.host_of(**d) == host);
        let mine = self.taskgraphs[taskgraph].all_devices();
        positions
            .filter_map(|(i, _)| mine.get(i).copied())
            .collect()
    }

    /// Where host `old` (an index into the cluster as given) sits after reordering.
    pub fn host_position(&self, old: usize) -> Option<usize> {
        self.host_order.iter().position(|&o| o == old)
    }
}

/// Slice `cluster` for `taskgraphs` with `layout`. `prefer_intra_node` picks the enumeration
/// order of `auto` (`cluster.device_place_prefer_intra_node`).
pub fn slice(
    cluster: &Cluster,
    taskgraphs: &[TaskGraph],
    layout: &Layout,
    prefer_intra_node: bool,
) -> Result<Slicing> {
    check_taskgraphs(taskgraphs)?;
    let identity: Vec<usize> = (0..cluster.num_hosts()).collect();
    let (sliced, host_order, slices) = match layout {
        Layout::All => (cluster.clone(), identity, all(cluster, taskgraphs.len())),
        Layout::Auto => (
            cluster.clone(),
            identity,
            auto(cluster, taskgraphs, prefer_intra_node)?,
        ),
        Layout::Specific(slices) => {
            check_specific(cluster, taskgraphs, slices)?;
            (cluster.clone(), identity, slices.clone())
        }
        Layout::AwareRow(n) => {
            let (reordered, order, slices) = aware_row(cluster, *n)?;
            check_slice_count(&format!("aware_row({n})"), slices.len(), taskgraphs.len())?;
            (reordered, order, slices)
        }
    };
    if !matches!(layout, Layout::All) {
        check_replica_sizes(layout.name(), taskgraphs, &slices)?;
    }
    let num_replicas = slices[0].len();
    let taskgraphs = taskgraphs.iter().zip(slices);
    let taskgraphs = taskgraphs.map(|(tg, replicas)| VirtualDevice {
        name: tg.name.clone(),
        strategy: tg.strategy,
        device_count: tg.device_count,
        replicas,
    });
    Ok(Slicing {
        layout: layout.clone(),
        cluster: sliced,
        host_order,
        taskgraphs: taskgraphs.collect(),
        num_replicas,
    })
}

/// `slice` with the layout and enumeration order the config asks for.
pub fn slice_for_config(
    cluster: &Cluster,
    taskgraphs: &[TaskGraph],
    config: &Config,
) -> Result<Slicing> {
    let layout = Layout::from_config(&config.cluster, cluster)?;
    slice(
        cluster,
        taskgraphs,
        &layout,
        config.cluster.device_place_prefer_intra_node,
    )
}

/// `1 device`, `2 devices`.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn describe(index: usize, tg: &TaskGraph) -> String {
    format!("TaskGraph {index} '{}'", tg.name)
}

fn check_taskgraphs(taskgraphs: &[TaskGraph]) -> Result<()> {
    if taskgraphs.is_empty() {
        return Err(Error::config(
            "strategy",
            "there are no TaskGraphs to place on devices; build the model first",
        ));
    }
    if let Some((i, tg)) = taskgraphs
        .iter()
        .enumerate()
        .find(|(_, tg)| tg.device_count == 0)
    {
        let msg = format!("{} has device_count 0; it must be >= 1", describe(i, tg));
        return Err(Error::config("strategy", msg));
    }
    Ok(())
}

/// Layout `all`: one replica slot per device, worker-major, shared by every TaskGraph.
fn all(cluster: &Cluster, taskgraphs: usize) -> Slices {
    let replicas: Vec<Vec<GlobalDevice>> = cluster.devices().map(|d| vec![d]).collect();
    vec![replicas; taskgraphs]
}

/// Layout `auto` (EPL's `generate_device_slices`): devices in enumeration order go replica by
/// replica, and within a replica TaskGraph by TaskGraph, so one replica's stages are adjacent.
fn auto(cluster: &Cluster, taskgraphs: &[TaskGraph], prefer_intra_node: bool) -> Result<Slices> {
    let total = cluster.num_devices();
    if taskgraphs.len() > total {
        let msg = format!(
            "{} TaskGraphs (pipeline stages) need at least {} devices, but the cluster has {} \
             ({cluster})",
            taskgraphs.len(),
            taskgraphs.len(),
            total
        );
        return Err(Error::config("devices", msg));
    }
    let per_replica: usize = taskgraphs.iter().map(|tg| tg.device_count).sum();
    if !total.is_multiple_of(per_replica) {
        let counts: Vec<String> = taskgraphs
            .iter()
            .map(|tg| tg.device_count.to_string())
            .collect();
        let msg = format!(
            "{total} devices cannot be cut into replicas of {per_replica} devices (the sum of \
             the TaskGraphs' device counts {}); use a multiple of {per_replica} devices",
            counts.join(" + ")
        );
        return Err(Error::config("devices", msg));
    }
    let mut devices = cluster.enumerate(prefer_intra_node).into_iter();
    let num_replicas = total / per_replica;
    let mut slices = vec![Vec::with_capacity(num_replicas); taskgraphs.len()];
    for _ in 0..num_replicas {
        for (t, tg) in taskgraphs.iter().enumerate() {
            slices[t].push(devices.by_ref().take(tg.device_count).collect());
        }
    }
    Ok(slices)
}

fn check_slice_count(layout: &str, slices: usize, taskgraphs: usize) -> Result<()> {
    if slices == taskgraphs {
        return Ok(());
    }
    let msg = format!(
        "layout {layout} makes {}, but the model has {}; each TaskGraph takes one slice",
        plural(slices, "slice"),
        plural(taskgraphs, "TaskGraph"),
    );
    Err(Error::config("cluster.layout", msg))
}

/// The rules EPL leaves to the user for `specific`: one slice per TaskGraph, devices of the
/// cluster, no device twice within a TaskGraph (two replicas on one device would race), and
/// the same replica count everywhere (replica `r` of every stage forms one pipeline).
fn check_specific(
    cluster: &Cluster,
    taskgraphs: &[TaskGraph],
    slices: &[Vec<Vec<GlobalDevice>>],
) -> Result<()> {
    check_slice_count("specific", slices.len(), taskgraphs.len())?;
    let bad = |msg: String| Err(Error::config("cluster.layout", msg));
    for (t, (tg, replicas)) in taskgraphs.iter().zip(slices).enumerate() {
        if replicas.is_empty() {
            return bad(format!(
                "layout specific gives {} no replicas",
                describe(t, tg)
            ));
        }
        let mut seen = HashSet::new();
        let positions = replicas.iter().enumerate();
        let positions =
            positions.flat_map(|(r, ds)| ds.iter().enumerate().map(move |(i, d)| (r, i, *d)));
        for (r, i, d) in positions {
            if !cluster.contains(d) {
                let n = cluster.num_devices();
                return bad(format!(
                    "layout specific names device {d} at [{t}][{r}][{i}], but the cluster has \
                     {n} devices (ids 0 to {})",
                    n - 1
                ));
            }
            if !seen.insert(d) {
                let name = cluster.device_name(d);
                return bad(format!(
                    "layout specific uses device {d} ({name}) twice in {}",
                    describe(t, tg)
                ));
            }
        }
        let first = &slices[0];
        if replicas.len() != first.len() {
            return bad(format!(
                "layout specific gives {} {} but {} {}; every TaskGraph needs the same replica \
                 count",
                describe(0, &taskgraphs[0]),
                plural(first.len(), "replica"),
                describe(t, tg),
                replicas.len()
            ));
        }
    }
    Ok(())
}

/// Every replica of a TaskGraph holds `device_count` devices (`auto` builds them that way;
/// `specific` and `aware_row` are checked so a scope's device count is never silently ignored).
fn check_replica_sizes(
    layout: &str,
    taskgraphs: &[TaskGraph],
    slices: &[Vec<Vec<GlobalDevice>>],
) -> Result<()> {
    for (t, (tg, replicas)) in taskgraphs.iter().zip(slices).enumerate() {
        if let Some((r, replica)) = replicas
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != tg.device_count)
        {
            let msg = format!(
                "layout {layout} gives replica {r} of {} {}, but its device_count is {}",
                describe(t, tg),
                plural(replica.len(), "device"),
                tg.device_count
            );
            return Err(Error::config("cluster.layout", msg));
        }
    }
    Ok(())
}
