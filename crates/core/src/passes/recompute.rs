//! Activation recomputation (`gradient_checkpoint.type`): a differentiated graph in which the
//! backward no longer reads forward values other than the checkpoints; it reads copies of the
//! forward ops, recomputed from the checkpoints just before their first backward reader. The
//! plan then frees every other forward value after its last forward use, so what a forward
//! keeps for backward shrinks to the checkpoints.
//!
//! Checkpoints are the user's marks (`collection`: `m.checkpoint(t)`) or, for `auto`, the
//! forward values live across each repeated block's end (the residual stream between layers),
//! else across √L segments balanced by activation bytes (both cut by `auto_stage`). A
//! recomputed dropout draws the same mask: its seed is part of the op, so the copy is the same
//! op. Values never recomputed: the checkpoints, leaves, the loss and the outputs (kept
//! anyway), values of TaskGraphs after `end_taskgraph`, and a value read from another TaskGraph
//! (it crossed stages).

use crate::error::{Error, Result};
use crate::ir::{Graph, Node, NodeId, Phase};
use std::collections::{BTreeSet, HashMap};

/// Rewrite `graph` (differentiated) so that backward recomputes every forward value outside
/// `keep`. `end_taskgraph`: recompute only in TaskGraphs with index <= it (None: all).
pub fn recompute(
    graph: Graph,
    keep: &BTreeSet<NodeId>,
    end_taskgraph: Option<usize>,
) -> Result<Graph> {
    if graph.grads.is_empty() {
        return Err(Error::internal("recompute runs on a differentiated graph"));
    }
    let mut kept = keep.clone();
    kept.extend(graph.loss);
    kept.extend(graph.outputs.iter().map(|(_, id)| *id));
    let mut r = Rewrite {
        old: &graph,
        kept,
        end_taskgraph,
        nodes: Vec::with_capacity(graph.nodes.len()),
        new_id: Vec::with_capacity(graph.nodes.len()),
        clone_of: HashMap::new(),
    };
    for id in graph.ids() {
        let n = graph.node(id);
        let inputs = if n.phase == Phase::Forward {
            n.inputs.iter().map(|x| r.new_id[x.index()]).collect()
        } else {
            n.inputs.iter().map(|&x| r.read(x, n.taskgraph.0)).collect()
        };
        let new = r.push(Node {
            inputs,
            ..n.clone()
        });
        r.new_id.push(new);
    }
    let Rewrite { nodes, new_id, .. } = r;
    Ok(graph.rewritten(nodes, |id| new_id[id.index()]))
}

struct Rewrite<'a> {
    old: &'a Graph,
    kept: BTreeSet<NodeId>,
    end_taskgraph: Option<usize>,
    nodes: Vec<Node>,
    /// Old id -> id of the same node in the new graph.
    new_id: Vec<NodeId>,
    /// Old forward id -> its recomputed copy (made once, read by every later backward op).
    clone_of: HashMap<NodeId, NodeId>,
}

impl Rewrite<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId(self.nodes.len() as u32 - 1)
    }

    fn recomputed(&self, x: NodeId, reader_taskgraph: u32) -> bool {
        let n = self.old.node(x);
        n.phase == Phase::Forward
            && !n.op.is_leaf()
            && !self.kept.contains(&x)
            && n.taskgraph.0 == reader_taskgraph
            && self
                .end_taskgraph
                .is_none_or(|end| n.taskgraph.0 as usize <= end)
    }

    /// What a backward op in `taskgraph` reads for old value `x`.
    fn read(&mut self, x: NodeId, taskgraph: u32) -> NodeId {
        if !self.recomputed(x, taskgraph) {
            return self.new_id[x.index()];
        }
        if let Some(&c) = self.clone_of.get(&x) {
            return c;
        }
        let n = self.old.node(x);
        let inputs = n
            .inputs
            .iter()
            .map(|&y| self.read(y, n.taskgraph.0))
            .collect();
        let c = self.push(Node {
            inputs,
            phase: Phase::Backward,
            ..n.clone()
        });
        self.clone_of.insert(x, c);
        c
    }
}

/// The forward values live across each of `ends` (forward node ids, in order): produced at or
/// before the end and read by a forward op after it. These are what a segment's recompute
/// starts from.
pub fn live_across(graph: &Graph, ends: &[NodeId]) -> BTreeSet<NodeId> {
    let mut out = BTreeSet::new();
    for id in graph.ids() {
        let n = graph.node(id);
        if n.phase != Phase::Forward {
            continue;
        }
        for &x in &n.inputs {
            let leaf = graph.node(x).op.is_leaf();
            if !leaf && ends.iter().any(|&e| x <= e && id > e) {
                out.insert(x);
            }
        }
    }
    out
}
