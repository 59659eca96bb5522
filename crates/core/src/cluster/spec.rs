//! `NODESxGPUS:KIND[+NODESxGPUS:KIND...]`: the cluster a plan is for, e.g. `384x8:a100-80g`, or
//! with two kinds `4x8:a100-80g+4x8:v100`.

use super::hardware::{Hardware, HardwareTable};
use crate::error::{Error, Result};
use crate::strategy::{Cluster, DeviceKind, parse_shape};

/// Most devices a plan places (a million GPUs).
pub const MAX_DEVICES: u64 = 1 << 20;

/// One homogeneous part of a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGroup {
    pub nodes: usize,
    pub gpus_per_node: usize,
    pub hardware: Hardware,
}

/// The whole cluster, parts in the order given (devices are numbered through them in turn).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    pub text: String,
    pub groups: Vec<NodeGroup>,
}

impl ClusterSpec {
    /// Parse `text`, looking kinds up in `table`.
    pub fn parse(text: &str, table: &HardwareTable) -> Result<Self> {
        let mut groups = Vec::new();
        for part in text.split('+') {
            let Some((shape, kind)) = part.trim().split_once(':') else {
                return Err(Error::config(
                    "cluster",
                    format!(
                        "cluster '{text}': part '{part}' names no hardware kind; expected \
                         NODESxGPUS:KIND such as 128x8:h100"
                    ),
                ));
            };
            let (nodes, gpus_per_node) = parse_shape(shape, text)?;
            let hardware = table.get(kind.trim())?.clone();
            groups.push(NodeGroup {
                nodes,
                gpus_per_node,
                hardware,
            });
        }
        if groups
            .windows(2)
            .any(|w| w[0].gpus_per_node != w[1].gpus_per_node)
        {
            return Err(Error::config(
                "cluster",
                format!("cluster '{text}': every part needs the same GPUs per node"),
            ));
        }
        let spec = ClusterSpec {
            text: text.to_string(),
            groups,
        };
        // The topology lists every node; ranks are placed one by one.
        crate::resource::check_count(
            "cluster devices",
            spec.devices() as u64,
            MAX_DEVICES,
            "a plan places every device",
        )?;
        Ok(spec)
    }

    pub fn devices(&self) -> usize {
        let per_group = self
            .groups
            .iter()
            .map(|g| g.nodes.saturating_mul(g.gpus_per_node));
        per_group.fold(0, usize::saturating_add)
    }

    pub fn gpus_per_node(&self) -> usize {
        self.groups[0].gpus_per_node
    }

    /// The single kind of a homogeneous cluster; an error naming the parts otherwise.
    pub fn homogeneous(&self) -> Result<&Hardware> {
        match self.groups.as_slice() {
            [one] => Ok(&one.hardware),
            _ => Err(Error::unsupported(
                "heterogeneous clusters",
                format!(
                    "cluster '{}' mixes {} kinds; this plan models one kind per cluster",
                    self.text,
                    self.groups.len()
                ),
            )),
        }
    }

    /// The hosts x devices EPL's slicing places ranks on (worker-major, intra-node first).
    pub fn topology(&self) -> Result<Cluster> {
        let nodes = self.groups.iter().map(|g| g.nodes).sum();
        Cluster::uniform(DeviceKind::Cuda, nodes, self.gpus_per_node())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_and_errors_name_the_part() {
        let t = HardwareTable::built_in().unwrap();
        let c = ClusterSpec::parse("384x8:A100-80G", &t).unwrap();
        assert_eq!((c.devices(), c.gpus_per_node()), (3072, 8));
        assert_eq!(c.homogeneous().unwrap().name, "a100-80g");
        let two = ClusterSpec::parse("4x8:a100-80g+4x8:v100", &t).unwrap();
        assert_eq!(two.devices(), 64);
        let e = two.homogeneous().unwrap_err();
        assert_eq!(e.code(), "WEFT_UNSUPPORTED");
        let err = |s: &str| ClusterSpec::parse(s, &t).unwrap_err().to_string();
        assert_eq!(
            err("2x8"),
            "cluster '2x8': part '2x8' names no hardware kind; expected NODESxGPUS:KIND such as \
             128x8:h100"
        );
        assert_eq!(
            err("2x0:h100"),
            "cluster '2x0:h100' needs two whole numbers >= 1; expected HOSTSxDEVICES such as 2x4"
        );
        assert_eq!(
            err("1000000000x8:h100"),
            "cluster devices=8000000000 is more than the limit of 1048576 (a plan places every \
             device)"
        );
        assert_eq!(
            err("2x8:h100+1x4:h100"),
            "cluster '2x8:h100+1x4:h100': every part needs the same GPUs per node"
        );
    }
}
