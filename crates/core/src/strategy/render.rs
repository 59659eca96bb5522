//! The stable text form of a `Slicing` (golden-tested) and its JSON (the `taskgraphs` part of
//! `weft plan --json`).

use super::layout::Layout;
use super::slicing::{Slicing, VirtualDevice, plural};
use crate::ir::Strategy;
use serde_json::{Value, json};
use std::fmt;

/// `replicate` or `split`, as the TS API and the plan JSON spell them.
pub fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Replicate => "replicate",
        Strategy::Split => "split",
    }
}

fn layout_label(layout: &Layout) -> String {
    match layout {
        Layout::AwareRow(n) => format!("aware_row({n})"),
        other => other.name().to_string(),
    }
}

impl Slicing {
    /// `{"layout","num_replicas","devices":[names],"taskgraphs":[{"name","index","strategy",
    /// "device_count","devices":[[ids]]}]}`; ids index into `devices`.
    pub fn to_json(&self) -> Value {
        let devices: Vec<String> = self
            .cluster
            .devices()
            .map(|d| self.cluster.device_name(d))
            .collect();
        let taskgraphs: Vec<Value> = self
            .taskgraphs
            .iter()
            .enumerate()
            .map(|(index, vd)| {
                let ids: Vec<Vec<u32>> = vd
                    .replicas
                    .iter()
                    .map(|r| r.iter().map(|d| d.0).collect())
                    .collect();
                json!({
                    "name": vd.name,
                    "index": index,
                    "strategy": strategy_name(vd.strategy),
                    "device_count": vd.device_count,
                    "devices": ids,
                })
            })
            .collect();
        json!({
            "layout": layout_label(&self.layout),
            "num_replicas": self.num_replicas,
            "devices": devices,
            "taskgraphs": taskgraphs,
        })
    }

    fn fmt_hosts(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cluster.num_hosts() == 1 {
            return Ok(());
        }
        let names: Vec<&str> = self
            .cluster
            .hosts()
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        write!(f, "hosts: {}", names.join(" "))?;
        if self
            .host_order
            .iter()
            .enumerate()
            .any(|(new, &old)| new != old)
        {
            let order: Vec<String> = self.host_order.iter().map(usize::to_string).collect();
            write!(f, " (reordered; given positions {})", order.join(" "))?;
        }
        writeln!(f)
    }

    fn fmt_taskgraph(&self, f: &mut fmt::Formatter<'_>, index: usize) -> fmt::Result {
        let VirtualDevice {
            name,
            strategy,
            device_count,
            replicas,
        } = &self.taskgraphs[index];
        let strategy = strategy_name(*strategy);
        writeln!(f, "taskgraph {index} '{name}' {strategy}({device_count})")?;
        for (r, replica) in replicas.iter().enumerate() {
            let names: Vec<String> = replica
                .iter()
                .map(|&d| self.cluster.device_name(d))
                .collect();
            writeln!(f, "  replica {r}: {}", names.join(" "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Slicing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "layout {}: {} x {} on {}",
            layout_label(&self.layout),
            plural(self.taskgraphs.len(), "TaskGraph"),
            plural(self.num_replicas, "replica"),
            self.cluster
        )?;
        self.fmt_hosts(f)?;
        for index in 0..self.taskgraphs.len() {
            self.fmt_taskgraph(f, index)?;
        }
        Ok(())
    }
}
