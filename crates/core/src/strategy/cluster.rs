//! The device topology: hosts x devices per host, global device ids, canonical device names,
//! and the two enumeration orders EPL slices devices from.

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fmt;

/// A device of the whole cluster, numbered worker-major: host `h`, local index `i` is
/// `h * devices_per_host + i`. (The executor's `exec::DeviceId` is a per-process handle; this is
/// the cluster-wide number the plan and `weft plan --json` use.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalDevice(pub u32);

impl GlobalDevice {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for GlobalDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the devices are; every host of a cluster has the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A CPU virtual device (a thread); many per process.
    Cpu,
    /// A CUDA GPU.
    Cuda,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// One worker (EPL's "task"): its address or name and how many devices it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// E.g. `host0` or `192.34.5.1:8000`; the part before `:` names the machine (`aware_row`).
    pub name: String,
    pub devices: usize,
}

impl Host {
    pub fn new(name: impl Into<String>, devices: usize) -> Self {
        Host {
            name: name.into(),
            devices,
        }
    }

    /// The machine the worker runs on: the name up to the first `:` (EPL's rule).
    pub fn machine(&self) -> &str {
        self.name.split(':').next().unwrap_or("")
    }
}

/// Hosts x devices per host. Every host has the same device count (EPL assumes it too; a
/// ragged cluster would make replicas of different shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    kind: DeviceKind,
    hosts: Vec<Host>,
}

impl Cluster {
    /// A cluster of the given hosts; errors on no hosts, a host without devices, unequal device
    /// counts or a repeated host name (device names would be ambiguous).
    pub fn new(kind: DeviceKind, hosts: Vec<Host>) -> Result<Self> {
        let Some(first) = hosts.first() else {
            return Err(Error::config(
                "cluster",
                "a cluster needs at least one host",
            ));
        };
        if let Some(h) = hosts.iter().find(|h| h.devices == 0) {
            let msg = format!(
                "host '{}' has no devices; every host needs at least one",
                h.name
            );
            return Err(Error::config("cluster", msg));
        }
        if let Some(h) = hosts.iter().find(|h| h.devices != first.devices) {
            let msg = format!(
                "every host needs the same device count: host '{}' has {}, host '{}' has {}",
                first.name, first.devices, h.name, h.devices
            );
            return Err(Error::config("cluster", msg));
        }
        let mut seen = HashSet::new();
        if let Some(h) = hosts.iter().find(|h| !seen.insert(h.name.as_str())) {
            let msg = format!("host name '{}' appears twice in the cluster", h.name);
            return Err(Error::config("cluster", msg));
        }
        Ok(Cluster { kind, hosts })
    }

    /// `n` CPU virtual devices in this process (`--devices cpu:N`).
    pub fn local(n: usize) -> Result<Self> {
        Cluster::uniform(DeviceKind::Cpu, 1, n)
    }

    /// `hosts` hosts named `host0`, `host1`, ... with `per_host` devices each.
    pub fn uniform(kind: DeviceKind, hosts: usize, per_host: usize) -> Result<Self> {
        let hosts = (0..hosts)
            .map(|h| Host::new(format!("host{h}"), per_host))
            .collect();
        Cluster::new(kind, hosts)
    }

    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn num_hosts(&self) -> usize {
        self.hosts.len()
    }

    pub fn devices_per_host(&self) -> usize {
        self.hosts[0].devices
    }

    pub fn num_devices(&self) -> usize {
        self.num_hosts() * self.devices_per_host()
    }

    /// The device with local index `local` on host `host`.
    pub fn device(&self, host: usize, local: usize) -> GlobalDevice {
        debug_assert!(host < self.num_hosts() && local < self.devices_per_host());
        GlobalDevice((host * self.devices_per_host() + local) as u32)
    }

    pub fn host_of(&self, d: GlobalDevice) -> usize {
        d.index() / self.devices_per_host()
    }

    pub fn local_index(&self, d: GlobalDevice) -> usize {
        d.index() % self.devices_per_host()
    }

    pub fn contains(&self, d: GlobalDevice) -> bool {
        d.index() < self.num_devices()
    }

    /// Every device in id (worker-major) order.
    pub fn devices(&self) -> impl Iterator<Item = GlobalDevice> {
        (0..self.num_devices() as u32).map(GlobalDevice)
    }

    /// The canonical name: `cpu:1` on a one-host cluster (the host is implied, and this matches
    /// `--devices cpu:N`), `host0/cpu:1` or `192.34.5.1:8000/cuda:0` on several hosts.
    pub fn device_name(&self, d: GlobalDevice) -> String {
        let local = format!("{}:{}", self.kind.as_str(), self.local_index(d));
        if self.num_hosts() == 1 {
            local
        } else {
            format!("{}/{local}", self.hosts[self.host_of(d)].name)
        }
    }

    /// Inverse of `device_name`.
    pub fn parse_device(&self, name: &str) -> Option<GlobalDevice> {
        self.devices().find(|&d| self.device_name(d) == name)
    }

    /// The order devices are handed out in: worker-major when `prefer_intra_node` (EPL's
    /// default, so one replica's devices stay inside a node), else device-index-major
    /// (device 0 of every host, then device 1 of every host, ...).
    pub fn enumerate(&self, prefer_intra_node: bool) -> Vec<GlobalDevice> {
        if prefer_intra_node {
            return self.devices().collect();
        }
        let (hosts, per_host) = (self.num_hosts(), self.devices_per_host());
        (0..per_host)
            .flat_map(|local| (0..hosts).map(move |host| (host, local)))
            .map(|(host, local)| self.device(host, local))
            .collect()
    }

    /// The same hosts in another order: `order[new] = old`.
    pub(crate) fn reordered(&self, order: &[usize]) -> Cluster {
        let hosts = order.iter().map(|&old| self.hosts[old].clone()).collect();
        Cluster {
            kind: self.kind,
            hosts,
        }
    }
}

/// `HOSTSxDEVICES` (e.g. `2x4`): the simulated cluster of `weft plan --cluster`. A `:KIND`
/// suffix (`2x4:h100`) names hardware, which only cluster planning (`cluster::ClusterSpec`)
/// models; a compiled run is refused it.
pub fn parse_cluster_shape(text: &str) -> Result<(usize, usize)> {
    let (shape, kind) = text.split_once(':').unwrap_or((text, ""));
    if !kind.is_empty() || text.ends_with(':') {
        return Err(Error::Unsupported {
            feature: "cluster kinds".into(),
            message: format!(
                "cluster '{text}': a hardware kind (':{kind}') is planned by 'weft plan \
                 --cluster' and weft.plan, not compiled (give HOSTSxDEVICES, e.g. '{shape}')"
            ),
        });
    }
    parse_shape(shape, text)
}

/// The `HOSTSxDEVICES` part `shape` of the cluster text `text` (named in errors).
pub(crate) fn parse_shape(shape: &str, text: &str) -> Result<(usize, usize)> {
    let bad = |why: &str| {
        Error::config(
            "cluster",
            format!("cluster '{text}' {why}; expected HOSTSxDEVICES such as 2x4"),
        )
    };
    let (hosts, devices) = shape
        .to_ascii_lowercase()
        .split_once('x')
        .map(|(h, d)| (h.trim().parse::<usize>(), d.trim().parse::<usize>()))
        .ok_or_else(|| bad("has no 'x'"))?;
    match (hosts, devices) {
        (Ok(h), Ok(d)) if h >= 1 && d >= 1 => Ok((h, d)),
        _ => Err(bad("needs two whole numbers >= 1")),
    }
}

/// `cluster.run_visible_devices` ('1', '0,2'): the local device indices a process uses, out of
/// `local` (None when unset: all). Errors name the entry.
pub fn visible_devices(text: &str, local: usize) -> Result<Option<Vec<usize>>> {
    const KEY: &str = "cluster.run_visible_devices";
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut out: Vec<usize> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let bad = |why: String| Error::config(KEY, format!("{KEY}='{text}': {why}"));
        let i: usize = entry
            .parse()
            .map_err(|_| bad(format!("'{entry}' is not a device index")))?;
        if i >= local {
            return Err(bad(format!(
                "device {i} is not one of this process's {} (indices 0 to {})",
                super::slicing::plural(local, "device"),
                local - 1
            )));
        }
        if out.contains(&i) {
            return Err(bad(format!("device {i} is listed twice")));
        }
        out.push(i);
    }
    Ok(Some(out))
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.num_hosts();
        write!(
            f,
            "{n} host{} x {} {} device{}",
            if n == 1 { "" } else { "s" },
            self.devices_per_host(),
            self.kind.as_str(),
            if self.devices_per_host() == 1 {
                ""
            } else {
                "s"
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_by_four() -> Cluster {
        Cluster::uniform(DeviceKind::Cuda, 2, 4).unwrap()
    }

    #[test]
    fn ids_are_worker_major_and_names_round_trip() {
        let c = two_by_four();
        assert_eq!(c.num_devices(), 8);
        assert_eq!(c.device(1, 2), GlobalDevice(6));
        assert_eq!(
            (c.host_of(GlobalDevice(6)), c.local_index(GlobalDevice(6))),
            (1, 2)
        );
        assert_eq!(c.device_name(GlobalDevice(6)), "host1/cuda:2");
        assert_eq!(c.parse_device("host1/cuda:2"), Some(GlobalDevice(6)));
        assert_eq!(c.parse_device("host2/cuda:0"), None);
        assert_eq!(c.to_string(), "2 hosts x 4 cuda devices");
    }

    #[test]
    fn one_host_names_drop_the_host() {
        let c = Cluster::local(3).unwrap();
        assert_eq!(c.device_name(GlobalDevice(2)), "cpu:2");
        assert_eq!(c.parse_device("cpu:1"), Some(GlobalDevice(1)));
        assert_eq!(c.to_string(), "1 host x 3 cpu devices");
    }

    #[test]
    fn enumeration_orders() {
        let c = two_by_four();
        let ids = |v: Vec<GlobalDevice>| v.into_iter().map(|d| d.0).collect::<Vec<_>>();
        assert_eq!(ids(c.enumerate(true)), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(ids(c.enumerate(false)), [0, 4, 1, 5, 2, 6, 3, 7]);
    }

    #[test]
    fn cluster_shapes_parse_and_kinds_wait() {
        assert_eq!(parse_cluster_shape("2x4"), Ok((2, 4)));
        assert_eq!(parse_cluster_shape("1X8"), Ok((1, 8)));
        let err = |t: &str| parse_cluster_shape(t).unwrap_err();
        assert_eq!(
            err("2x0").to_string(),
            "cluster '2x0' needs two whole numbers >= 1; expected HOSTSxDEVICES such as 2x4"
        );
        assert_eq!(
            err("8").to_string(),
            "cluster '8' has no 'x'; expected HOSTSxDEVICES such as 2x4"
        );
        let kind = err("2x4:h100");
        assert_eq!(kind.code(), "WEFT_UNSUPPORTED");
        assert_eq!(
            kind.to_string(),
            "cluster '2x4:h100': a hardware kind (':h100') is planned by 'weft plan --cluster' \
             and weft.plan, not compiled (give HOSTSxDEVICES, e.g. '2x4')"
        );
    }

    #[test]
    fn visible_devices_name_the_bad_entry() {
        assert_eq!(visible_devices("", 2), Ok(None));
        assert_eq!(visible_devices("1", 2), Ok(Some(vec![1])));
        assert_eq!(visible_devices(" 1, 0 ", 2), Ok(Some(vec![1, 0])));
        let err = |t: &str| visible_devices(t, 2).unwrap_err().to_string();
        assert_eq!(
            err("2"),
            "cluster.run_visible_devices='2': device 2 is not one of this process's 2 devices \
             (indices 0 to 1)"
        );
        assert_eq!(
            err("0,gpu"),
            "cluster.run_visible_devices='0,gpu': 'gpu' is not a device index"
        );
        assert_eq!(
            err("1,1"),
            "cluster.run_visible_devices='1,1': device 1 is listed twice"
        );
    }

    #[test]
    fn machine_is_the_address_before_the_port() {
        assert_eq!(Host::new("192.34.5.1:8000", 1).machine(), "192.34.5.1");
        assert_eq!(Host::new("host0", 1).machine(), "host0");
    }

    #[test]
    fn construction_errors() {
        let err = |r: Result<Cluster>| r.unwrap_err().to_string();
        assert_eq!(
            err(Cluster::new(DeviceKind::Cpu, vec![])),
            "a cluster needs at least one host"
        );
        assert_eq!(
            err(Cluster::local(0)),
            "host 'host0' has no devices; every host needs at least one"
        );
        let ragged = vec![Host::new("a", 4), Host::new("b", 4), Host::new("c", 2)];
        assert_eq!(
            err(Cluster::new(DeviceKind::Cuda, ragged)),
            "every host needs the same device count: host 'a' has 4, host 'c' has 2"
        );
        let twice = vec![Host::new("a", 1), Host::new("a", 1)];
        assert_eq!(
            err(Cluster::new(DeviceKind::Cuda, twice)),
            "host name 'a' appears twice in the cluster"
        );
    }
}
