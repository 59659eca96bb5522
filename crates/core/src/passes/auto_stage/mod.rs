//! Automatic pipeline-stage partition (EPL's `auto.auto_parallel`, section 4.8 of the EPL
//! reference), run on the user's forward graph before autodiff.
//!
//! - `blocks.rs`: repeated-block detection from dotted parameter names (EPL's repeated-layer
//!   policy, adapted to an IR without name scopes).
//! - `cost.rs`: per-op FLOPs, activation and parameter bytes; `StageCost` of an assignment.
//! - `partition.rs`: the exact min-max dynamic program over cut points, and EPL's
//!   `partition_balance` (balance-op-num) for comparison.
//! - `tests.rs`: EPL's cases (8 / 6 / 12 blocks into 4 stages) and the cost model against equal
//!   op counts.
//!
//! Policy (`auto.stage_policy`), in order: under 'epl' (the default), if at least
//! `MIN_REPEAT_BLOCKS` repeated blocks are found and their count divides S, consecutive blocks
//! go to stages evenly (EPL's rule, whatever the cost model predicts; the report then carries the
//! cost model's partition when it predicts a faster pipeline, so `weft plan` can suggest it);
//! otherwise, and always under 'cost_model', the cost model cuts the forward compute ops into S
//! contiguous stages minimising the slowest stage. When repeated blocks exist but are not dealt
//! out, cuts are kept on block boundaries if that costs at most 5% on the slowest stage (whole
//! layers per stage, at nearly no loss).
//!
//! Stages are contiguous in node order, which is a topological order (every input precedes its
//! user), so no forward tensor can flow from a later stage to an earlier one.

mod blocks;
mod cost;
mod partition;
#[cfg(test)]
mod tests;

pub use cost::{StageCost, stage_costs};

use crate::config::StagePolicyChoice;
use crate::error::{Error, Result};
use crate::ir::{Graph, NodeId, Phase, Strategy, TaskGraph, TaskGraphId};
use std::fmt;

/// Which rule produced the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagePolicy {
    /// EPL's repeated-layer rule: the block count divides S, blocks are dealt out evenly.
    RepeatedBlocks,
    /// The exact min-max partition over the FLOP cost model.
    CostModel,
}

impl StagePolicy {
    pub fn name(self) -> &'static str {
        match self {
            StagePolicy::RepeatedBlocks => "repeated_blocks",
            StagePolicy::CostModel => "cost_model",
        }
    }
}

/// What `auto_stages` decided and what each stage is predicted to cost.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoStageReport {
    pub stages: Vec<StageCost>,
    pub policy: StagePolicy,
    /// How many repeated blocks were detected (None: no repeated structure).
    pub blocks: Option<usize>,
    /// True when every cut falls on a block boundary (always so under `RepeatedBlocks`).
    pub block_aligned: bool,
    /// Under `RepeatedBlocks`: the cost model's stages, when it predicts a faster pipeline
    /// (`auto.stage_policy='cost_model'` picks them).
    pub faster_cost_model: Option<Vec<StageCost>>,
    /// Each repeated block's scope (`h.3`) and the stages its ops landed on (one unless the
    /// cut falls inside it), in block order.
    pub block_stages: Vec<(String, Vec<usize>)>,
}

impl AutoStageReport {
    /// The slowest stage's estimated training time: what bounds the pipeline's throughput.
    pub fn bottleneck_ms(&self) -> f64 {
        self.stages.iter().map(|s| s.time_ms).fold(0.0, f64::max)
    }
}

impl fmt::Display for AutoStageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = match (self.blocks, self.block_aligned) {
            (Some(n), true) => format!(", {n} repeated blocks, cuts on block boundaries"),
            (Some(n), false) => format!(", {n} repeated blocks, cuts inside blocks"),
            (None, _) => String::new(),
        };
        writeln!(
            f,
            "auto stages: {} stages by {}{blocks}",
            self.stages.len(),
            self.policy.name()
        )?;
        for (i, s) in self.stages.iter().enumerate() {
            writeln!(f, "  stage{i}: {s}")?;
        }
        if let Some(other) = &self.faster_cost_model {
            let slowest = other.iter().map(|s| s.time_ms).fold(0.0, f64::max);
            writeln!(
                f,
                "  the cost model predicts a faster pipeline (slowest stage {slowest:.3} ms vs \
                 {:.3} ms); auto.stage_policy='cost_model' cuts:",
                self.bottleneck_ms()
            )?;
            for (i, s) in other.iter().enumerate() {
                writeln!(f, "    stage{i}: {s}")?;
            }
        }
        Ok(())
    }
}

/// Partition a forward graph (one TaskGraph holding all computation, no autodiff yet) into
/// `num_stages` pipeline stages: TaskGraphs `stage0..stage{S-1}` (replicate, one device), with
/// every node re-tagged. Leaves (parameters, inputs, constants) go to their first consumer's stage.
pub fn auto_stages(
    graph: Graph,
    num_stages: usize,
    policy: StagePolicyChoice,
) -> Result<(Graph, AutoStageReport)> {
    check_graph(&graph, num_stages)?;
    let units = compute_units(&graph);
    let unit_costs = cost::unit_costs(&graph, &units);
    let found = blocks::find_repeated_blocks(&graph, &units);
    let cost_model = cost_model_stages(&unit_costs, &found, num_stages)?;
    let even = (policy == StagePolicyChoice::Epl
        && found.len() >= blocks::MIN_REPEAT_BLOCKS
        && found.len().is_multiple_of(num_stages))
    .then(|| Choice {
        unit_stage: found.even_stages(unit_costs.len(), num_stages),
        policy: StagePolicy::RepeatedBlocks,
        aligned: true,
    });
    let costs_of = |c: &Choice| {
        let stage_of = spread_to_leaves(&graph, &units, &c.unit_stage);
        (stage_costs(&graph, &stage_of, num_stages), stage_of)
    };
    let slowest = |costs: &[StageCost]| costs.iter().map(|s| s.time_ms).fold(0.0, f64::max);
    let (choice, faster_cost_model) = match even {
        Some(even) => {
            let (other, _) = costs_of(&cost_model);
            let (mine, _) = costs_of(&even);
            let faster = slowest(&other) < slowest(&mine);
            (even, faster.then_some(other))
        }
        None => (cost_model, None),
    };
    let (stages, stage_of) = costs_of(&choice);
    let block_stages = found
        .list
        .iter()
        .map(|b| {
            let mut on: Vec<usize> = b.units.iter().map(|&u| choice.unit_stage[u]).collect();
            on.dedup();
            (b.scope.clone(), on)
        })
        .collect();
    let report = AutoStageReport {
        block_stages,
        stages,
        policy: choice.policy,
        blocks: (!found.is_empty()).then_some(found.len()),
        block_aligned: !found.is_empty() && choice.aligned,
        faster_cost_model,
    };
    let graph = retag(graph, &stage_of, num_stages);
    graph.verify()?;
    Ok((graph, report))
}

/// EPL's balance-op-num policy, for comparison: every forward compute op weighs 1 and
/// `partition_balance` picks the smallest bucket capacity that fills at most S contiguous
/// buckets. Returns each node's stage (leaves follow their first consumer). Where EPL would end
/// with fewer than S buckets the largest bucket is halved until there are S (weft's layout has
/// exactly S devices per replica); with fewer ops than stages the last stages stay empty.
pub fn equal_op_count_stages(graph: &Graph, num_stages: usize) -> Vec<usize> {
    let units = compute_units(graph);
    let starts = partition::partition_balance(&vec![1; units.len()], num_stages.max(1));
    let unit_stage = partition::stage_per_unit(&starts, units.len());
    spread_to_leaves(graph, &units, &unit_stage)
}

/// The last forward op of each repeated block (EPL's rule), in order; empty without blocks.
pub fn block_ends(graph: &Graph) -> Vec<NodeId> {
    let units: Vec<NodeId> = compute_units(graph)
        .into_iter()
        .filter(|&id| graph.node(id).phase == crate::ir::Phase::Forward)
        .collect();
    let found = blocks::find_repeated_blocks(graph, &units);
    found
        .list
        .iter()
        .filter_map(|b| b.units.iter().max().map(|&u| units[u]))
        .collect()
}

/// Ends of about √L contiguous segments of the forward compute ops, cut by the exact min-max
/// partition so the largest segment keeps as few activation bytes as possible (activation
/// recomputation's fallback when the model has no repeated blocks).
pub fn sqrt_segment_ends(graph: &Graph) -> Vec<NodeId> {
    let units: Vec<NodeId> = compute_units(graph)
        .into_iter()
        .filter(|&id| graph.node(id).phase == crate::ir::Phase::Forward)
        .collect();
    let segments = (units.len() as f64).sqrt().round().max(1.0) as usize;
    let keys: Vec<partition::Key> = cost::unit_costs(graph, &units)
        .iter()
        .map(|c| (c.activation_bytes, 0))
        .collect();
    partition::min_max_partition(&keys, segments, None)
        .map(|p| p.starts[1..].iter().map(|&s| units[s - 1]).collect())
        .unwrap_or_default()
}

/// The forward compute nodes (non-leaves) in node order: the units stages are cut from.
fn compute_units(graph: &Graph) -> Vec<NodeId> {
    graph
        .ids()
        .filter(|&id| !graph.node(id).op.is_leaf())
        .collect()
}

/// The refusals: wrong stage count, a graph already differentiated, or strategy scopes (EPL
/// raises when a strategy is entered under `auto.auto_parallel`).
fn check_graph(graph: &Graph, num_stages: usize) -> Result<()> {
    if num_stages == 0 {
        return Err(Error::config(
            "pipeline.num_stages",
            "pipeline.num_stages must be >= 1 for automatic stage partition, got 0",
        ));
    }
    if let Some(id) = graph
        .ids()
        .find(|&id| graph.node(id).phase != Phase::Forward)
    {
        return Err(Error::shape(
            "auto_stages",
            format!(
                "automatic stage partition runs on the forward graph before autodiff, but {id} \
                 is a {} node (`{}`)",
                graph.node(id).phase.name(),
                graph.node_line(id)
            ),
        ));
    }
    check_no_scopes(graph)?;
    let ops = compute_units(graph).len();
    if num_stages > ops {
        return Err(Error::config(
            "pipeline.num_stages",
            format!(
                "pipeline.num_stages={num_stages} is more than the model's {ops} compute ops; \
                 every stage needs at least one op"
            ),
        ));
    }
    Ok(())
}

fn check_no_scopes(graph: &Graph) -> Result<()> {
    let computing: Vec<&str> = graph
        .taskgraphs
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let tg = TaskGraphId(*i as u32);
            graph
                .nodes
                .iter()
                .any(|n| n.taskgraph == tg && !n.op.is_leaf())
        })
        .map(|(_, tg)| tg.name.as_str())
        .collect();
    if computing.len() > 1 {
        let names: Vec<String> = computing.iter().map(|n| format!("'{n}'")).collect();
        return Err(Error::config(
            "auto.auto_parallel",
            format!(
                "auto.auto_parallel partitions stages itself and does not allow strategy \
                 scopes, but TaskGraphs {} all hold computation; remove the scopes or turn \
                 auto.auto_parallel off",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The stage of each compute unit and how it was chosen.
struct Choice {
    unit_stage: Vec<usize>,
    policy: StagePolicy,
    aligned: bool,
}

/// The cost model's stages: the exact min-max partition, kept on block boundaries when that
/// costs at most 5% on the slowest stage (whole layers together: simpler stages, cleaner
/// activation hand-offs).
fn cost_model_stages(costs: &[cost::UnitCost], found: &blocks::Blocks, s: usize) -> Result<Choice> {
    let keys: Vec<partition::Key> = costs.iter().map(|c| c.key()).collect();
    let free = partition::min_max_partition(&keys, s, None)
        .ok_or_else(|| Error::internal(format!("no partition of {} ops into {s}", keys.len())))?;
    let within = |bottleneck: f64| bottleneck <= 1.05 * free.bottleneck.0 as f64;
    let mut best = (free.clone(), false);
    if !found.is_empty() {
        let allowed = found.boundaries(costs.len());
        if let Some(on_blocks) = partition::min_max_partition(&keys, s, Some(&allowed))
            && within(on_blocks.bottleneck.0 as f64)
        {
            best = (on_blocks, true);
        }
    }
    Ok(Choice {
        unit_stage: partition::stage_per_unit(&best.0.starts, costs.len()),
        policy: StagePolicy::CostModel,
        aligned: best.1,
    })
}

/// Each node's stage: compute units as chosen; a leaf goes to its first consumer, which holds
/// the earliest stage reading it since stages never decrease along node order. Unread leaves
/// stay on stage 0.
fn spread_to_leaves(graph: &Graph, units: &[NodeId], unit_stage: &[usize]) -> Vec<usize> {
    let mut stage_of = vec![usize::MAX; graph.nodes.len()];
    for (u, id) in units.iter().enumerate() {
        stage_of[id.index()] = unit_stage[u];
    }
    for &id in units {
        for x in &graph.node(id).inputs {
            if stage_of[x.index()] == usize::MAX {
                stage_of[x.index()] = stage_of[id.index()];
            }
        }
    }
    stage_of
        .iter_mut()
        .filter(|s| **s == usize::MAX)
        .for_each(|s| *s = 0);
    stage_of
}

/// Replace the TaskGraphs by one per stage and move every node to its stage's TaskGraph.
fn retag(mut graph: Graph, stage_of: &[usize], num_stages: usize) -> Graph {
    graph.taskgraphs = (0..num_stages)
        .map(|s| TaskGraph {
            name: format!("stage{s}"),
            strategy: Strategy::Replicate,
            device_count: 1,
        })
        .collect();
    for (n, &s) in graph.nodes.iter_mut().zip(stage_of) {
        n.taskgraph = TaskGraphId(s as u32);
    }
    graph
}
