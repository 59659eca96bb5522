//! EPL's topology-aware `aware_row` layout: for clusters of one-device workers, put the workers
//! of one machine next to each other (so a slice of consecutive workers stays on few machines),
//! then cut the workers into slices of `n`.

use super::cluster::Cluster;
use super::layout::Slices;
use crate::error::{Error, Result};

const KEY: &str = "cluster.layout";

/// The host order EPL's `AwareRowLayout.reorder_hosts` produces, as `order[new] = old`:
/// machines in order of first appearance, each machine's workers in their original order.
/// Rank 0 stays first because its machine appears first (EPL moves rank 0's machine to the
/// front explicitly; with first-appearance grouping that is already the case).
pub fn aware_host_order(cluster: &Cluster) -> Result<Vec<usize>> {
    let mut machines: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, host) in cluster.hosts().iter().enumerate() {
        match machines.iter_mut().find(|(m, _)| *m == host.machine()) {
            Some((_, workers)) => workers.push(index),
            None => machines.push((host.machine(), vec![index])),
        }
    }
    let (first, first_workers) = &machines[0];
    if let Some((m, workers)) = machines
        .iter()
        .find(|(_, w)| w.len() != first_workers.len())
    {
        let msg = format!(
            "layout aware_row needs the same number of workers on every machine: {first} has \
             {}, {m} has {}",
            first_workers.len(),
            workers.len()
        );
        return Err(Error::config(KEY, msg));
    }
    Ok(machines
        .into_iter()
        .flat_map(|(_, workers)| workers)
        .collect())
}

/// The reordered cluster and its slices: slice `k` has `n` replicas, the single devices of
/// workers `k*n .. k*n+n` (in the new order). Returns `(cluster, order, slices)`.
pub(crate) fn aware_row(cluster: &Cluster, n: usize) -> Result<(Cluster, Vec<usize>, Slices)> {
    let per_host = cluster.devices_per_host();
    if per_host != 1 {
        let msg = format!(
            "layout aware_row needs one device per host; the cluster has {per_host} per host"
        );
        return Err(Error::config(KEY, msg));
    }
    let hosts = cluster.num_hosts();
    // EPL checks `hosts % (hosts / n)`, which lets e.g. 6 hosts in slices of 4 through and
    // then fails on an index; requiring `n` to divide the hosts is the rule it means.
    if n == 0 {
        let msg = "layout aware_row needs at least one worker per slice, got 0";
        return Err(Error::config(KEY, msg));
    }
    if !hosts.is_multiple_of(n) {
        let msg = format!(
            "layout aware_row({n}) needs the host count to be a multiple of {n}; the cluster \
             has {hosts} host{}",
            if hosts == 1 { "" } else { "s" }
        );
        return Err(Error::config(KEY, msg));
    }
    let order = aware_host_order(cluster)?;
    let reordered = cluster.reordered(&order);
    let slices = (0..hosts / n)
        .map(|k| {
            (0..n)
                .map(|j| vec![reordered.device(k * n + j, 0)])
                .collect()
        })
        .collect();
    Ok((reordered, order, slices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::cluster::{DeviceKind, Host};

    fn cluster(names: &[&str], per_host: usize) -> Cluster {
        let hosts = names.iter().map(|n| Host::new(*n, per_host)).collect();
        Cluster::new(DeviceKind::Cuda, hosts).unwrap()
    }

    #[test]
    fn machines_are_grouped_in_first_appearance_order() {
        let c = cluster(&["a:1", "b:1", "a:2", "c:1", "b:2", "c:2"], 1);
        assert_eq!(aware_host_order(&c), Ok(vec![0, 2, 1, 4, 3, 5]));
    }

    #[test]
    fn uneven_machines_are_refused() {
        let c = cluster(&["a:1", "b:1", "a:2"], 1);
        assert_eq!(
            aware_host_order(&c).unwrap_err().to_string(),
            "layout aware_row needs the same number of workers on every machine: a has 2, b \
             has 1"
        );
    }

    #[test]
    fn several_devices_per_host_are_refused() {
        let c = cluster(&["a:1", "b:1"], 2);
        assert_eq!(
            aware_row(&c, 1).unwrap_err().to_string(),
            "layout aware_row needs one device per host; the cluster has 2 per host"
        );
    }

    #[test]
    fn slice_size_must_divide_the_hosts() {
        let c = cluster(&["a:1", "a:2", "a:3", "a:4", "a:5", "a:6"], 1);
        assert_eq!(
            aware_row(&c, 4).unwrap_err().to_string(),
            "layout aware_row(4) needs the host count to be a multiple of 4; the cluster has 6 \
             hosts"
        );
        assert_eq!(
            aware_row(&c, 0).unwrap_err().to_string(),
            "layout aware_row needs at least one worker per slice, got 0"
        );
        let (_, _, slices) = aware_row(&c, 3).unwrap();
        let ids: Vec<Vec<u32>> = slices
            .iter()
            .map(|s| s.iter().map(|r| r[0].0).collect())
            .collect();
        assert_eq!(ids, [[0, 1, 2], [3, 4, 5]]);
    }
}
