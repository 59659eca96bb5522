//! Stage assignment: which pipeline stage computes each node. A TaskGraph holding computation is
//! a stage (in TaskGraph order); leaves (parameters, constants) go to the stage of their first
//! consumer when their own TaskGraph computes nothing; batch inputs are loaded by every stage
//! that reads them. A forward tensor may only flow to the same or a later stage.

use crate::error::{Error, Result};
use crate::ir::{Graph, Op, Phase, StageMap};

fn computes(op: &Op) -> bool {
    !op.is_leaf()
}

/// Assign stages from TaskGraphs; `graph` may already be differentiated (backward nodes carry
/// their forward op's TaskGraph).
pub fn assign_stages(graph: &Graph) -> Result<StageMap> {
    let tgs = graph.taskgraphs.len();
    let mut has_compute = vec![false; tgs];
    for n in &graph.nodes {
        if computes(&n.op) && n.phase == Phase::Forward {
            has_compute[n.taskgraph.0 as usize] = true;
        }
    }
    let mut stage_of_tg = vec![usize::MAX; tgs];
    let mut names = Vec::new();
    for (i, tg) in graph.taskgraphs.iter().enumerate() {
        if has_compute[i] {
            stage_of_tg[i] = names.len();
            names.push(tg.name.clone());
        }
    }
    if names.is_empty() {
        return Err(Error::shape(
            "stages",
            "the model computes nothing: every TaskGraph is empty",
        ));
    }
    let mut stage_of = vec![usize::MAX; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        stage_of[i] = stage_of_tg[n.taskgraph.0 as usize];
    }
    // Leaves of TaskGraphs without computation follow their first consumer.
    for id in graph.ids() {
        for x in &graph.node(id).inputs {
            if stage_of[x.index()] == usize::MAX {
                stage_of[x.index()] = stage_of[id.index()];
            }
        }
    }
    for s in stage_of.iter_mut().filter(|s| **s == usize::MAX) {
        *s = 0;
    }
    let map = StageMap { stage_of, names };
    check_forward_flow(graph, &map)?;
    Ok(map)
}

/// A forward value read by an earlier stage would need a later stage to run first.
fn check_forward_flow(graph: &Graph, map: &StageMap) -> Result<()> {
    for id in graph.ids() {
        let n = graph.node(id);
        if n.phase != Phase::Forward {
            continue;
        }
        for x in &n.inputs {
            let (from, to) = (map.stage_of[x.index()], map.stage_of[id.index()]);
            if from > to && !matches!(graph.node(*x).op, Op::Input { .. }) {
                return Err(Error::shape(
                    "pipeline",
                    format!(
                        "tensor {} (`{}`) of stage {from} '{}' flows back to stage {to} '{}' \
                         (read by `{}`); a stage may only read tensors of itself or earlier stages",
                        x,
                        graph.node_line(*x),
                        map.names[from],
                        map.names[to],
                        graph.node_line(id)
                    ),
                ));
            }
        }
    }
    Ok(())
}
