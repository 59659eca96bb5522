//! The layout a plan evaluates (tensor x pipeline x data sizes, micro-batches, schedule, ZeRO,
//! recompute, precision), its checks against the model and cluster, and where its groups land:
//! world rank = (replica x stages + stage) x tp + tp index, placed worker-major on the nodes as
//! EPL's slicing does with `prefer_intra_node` (the runtime's `Layout` order).

use super::hardware::{Link, Precision};
use super::model::ModelShape;
use super::spec::ClusterSpec;
use crate::config::ZeroLevel;
use crate::error::{Error, Result};
use crate::schedule::{Schedule, gpipe, interleaved, lower, one_f_one_b};
use crate::strategy::{Cluster, GlobalDevice};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most micro-batch x stage work items a plan simulates (the 1T GPT of the tests has 32768).
pub const MAX_SIMULATED: u64 = 4_000_000;

/// What the user chose; `dp` follows from the device count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanLayout {
    pub tp: usize,
    pub pp: usize,
    /// Rows of the global batch per optimizer step.
    pub global_batch: usize,
    /// Rows of one micro-batch on one replica.
    pub micro_batch: usize,
    /// Micro-batches per step instead (`pipeline.num_micro_batch`): the rows follow.
    pub micro_batches: Option<usize>,
    /// `1f1b`, `gpipe` or `interleaved` (with `virtual_stages` > 1).
    pub schedule: String,
    pub virtual_stages: usize,
    /// `zero.level`: '', 'v0', 'v1', 'v2'.
    pub zero: String,
    /// Full activation recompute of every layer.
    pub recompute: bool,
    /// `fp32`, `bf16` or `fp16`.
    pub precision: String,
    /// `adam` (two f32 states per parameter) or `sgd` (none).
    pub optimizer: String,
}

impl Default for PlanLayout {
    fn default() -> Self {
        PlanLayout {
            tp: 1,
            pp: 1,
            global_batch: 8,
            micro_batch: 1,
            micro_batches: None,
            schedule: "1f1b".into(),
            virtual_stages: 1,
            zero: String::new(),
            recompute: false,
            precision: "bf16".into(),
            optimizer: "adam".into(),
        }
    }
}

/// A checked layout with the derived sizes.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub layout: PlanLayout,
    pub dp: usize,
    pub micro_batches: usize,
    /// Pipeline stages: pp x virtual stages.
    pub stages: usize,
    pub zero: ZeroLevel,
    pub precision: Precision,
    pub optimizer_states: f64,
    /// [stages]: the layers of each stage.
    pub stage_layers: Vec<std::ops::Range<usize>>,
}

impl Resolved {
    pub fn new(layout: &PlanLayout, model: &ModelShape, devices: usize) -> Result<Self> {
        let mut l = layout.clone();
        if let Some(m) = l.micro_batches.filter(|&m| m > 0) {
            let dp = devices / (l.tp * l.pp).max(1);
            l.micro_batch = l.global_batch / (dp * m).max(1);
        }
        let l = &l;
        let bad = |m: String| Err(Error::config("layout", m));
        if l.tp == 0 || l.pp == 0 || l.micro_batch == 0 || l.virtual_stages == 0 {
            return bad("tp, pp, micro_batch and virtual_stages must be >= 1".into());
        }
        model.check(l.tp)?;
        if !devices.is_multiple_of(l.tp * l.pp) {
            return bad(format!(
                "tp {} x pp {} = {} does not divide the cluster's {devices} devices",
                l.tp,
                l.pp,
                l.tp * l.pp
            ));
        }
        let dp = devices / (l.tp * l.pp);
        if !l.global_batch.is_multiple_of(dp * l.micro_batch) || l.global_batch == 0 {
            return bad(format!(
                "global batch {} is not a multiple of dp {dp} x micro-batch {}",
                l.global_batch, l.micro_batch
            ));
        }
        let stages = l.pp * l.virtual_stages;
        let micro_batches = l.global_batch / (dp * l.micro_batch);
        // The simulated schedule holds a few actions per micro-batch and stage.
        crate::resource::check_count(
            "micro-batches x pipeline stages",
            (micro_batches as u64).saturating_mul(stages as u64),
            MAX_SIMULATED,
            "the step is simulated action by action; use larger micro-batches",
        )?;
        if stages > model.layers() {
            return bad(format!(
                "{stages} pipeline stages for {} layers: each stage needs a layer",
                model.layers()
            ));
        }
        let zero = ZeroLevel::parse(&l.zero.to_ascii_lowercase()).ok_or_else(|| {
            Error::config(
                "zero.level",
                format!("zero '{}' is not '', v0, v1 or v2", l.zero),
            )
        })?;
        let optimizer_states = match l.optimizer.as_str() {
            "adam" | "adamw" => 2.0,
            "sgd" => 0.0,
            o => return bad(format!("optimizer '{o}' is not adam, adamw or sgd")),
        };
        Ok(Resolved {
            layout: l.clone(),
            dp,
            micro_batches,
            stages,
            zero,
            precision: Precision::parse(&l.precision)?,
            optimizer_states,
            stage_layers: split_layers(model.layers(), stages),
        })
    }

    /// The lowered per-rank schedule of one replica: the runtime's generators.
    pub fn schedule(&self) -> Result<Schedule> {
        let (pp, m) = (self.layout.pp, self.micro_batches);
        let s = match (self.layout.schedule.as_str(), self.layout.virtual_stages) {
            ("1f1b", 1) => one_f_one_b(pp, m)?,
            ("gpipe", 1) => gpipe(pp, m)?,
            ("interleaved", v) => interleaved(pp, v, m)?,
            (other, v) => {
                return Err(Error::config(
                    "pipeline.strategy",
                    format!(
                        "schedule '{other}' with {v} virtual stages; use 1f1b or gpipe with 1, \
                         interleaved with more"
                    ),
                ));
            }
        };
        lower(&s)
    }
}

/// `layers` over `stages` contiguous stages, the first `layers % stages` one layer longer.
pub fn split_layers(layers: usize, stages: usize) -> Vec<std::ops::Range<usize>> {
    let (base, extra) = (layers / stages, layers % stages);
    let mut first = 0;
    (0..stages)
        .map(|s| {
            let n = base + usize::from(s < extra);
            first += n;
            first - n..first
        })
        .collect()
}

/// The link each kind of group crosses, from where its ranks land.
#[derive(Clone, Copy, Debug)]
pub struct Links {
    pub tp: Link,
    pub dp: Link,
    pub pp: Link,
}

impl Links {
    pub fn new(r: &Resolved, cluster: &ClusterSpec) -> Result<Self> {
        let hw = cluster.homogeneous()?;
        let topo = cluster.topology()?;
        let (tp, pp, dp) = (r.layout.tp, r.layout.pp, r.dp);
        let rank = |replica: usize, stage: usize, t: usize| (replica * pp + stage) * tp + t;
        let link = |ranks: &mut dyn Iterator<Item = usize>| {
            super::collective::group_link(hw, nodes_spanned(&topo, ranks))
        };
        Ok(Links {
            tp: link(&mut (0..tp).map(|t| rank(0, 0, t))),
            dp: link(&mut (0..dp).map(|d| rank(d, 0, 0))),
            pp: link(&mut (0..pp).map(|s| rank(0, s, 0))),
        })
    }
}

fn nodes_spanned(topo: &Cluster, ranks: &mut dyn Iterator<Item = usize>) -> usize {
    let nodes: BTreeSet<usize> = ranks
        .map(|r| topo.host_of(GlobalDevice(r as u32)))
        .collect();
    nodes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_split_with_the_remainder_first() {
        assert_eq!(split_layers(5, 2), [0..3, 3..5]);
        assert_eq!(split_layers(4, 4), [0..1, 1..2, 2..3, 3..4]);
    }
}
