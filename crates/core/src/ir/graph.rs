//! The graph arena: nodes in topological order (every input id is smaller than its user's id),
//! each with one output value, tagged with its TaskGraph (strategy scope) and phase.

use super::op::Op;
use super::shape::Shape;
use crate::tensor::DType;
use std::fmt;

/// Index of a node in `Graph::nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Index of a TaskGraph: the unit a strategy scope (replicate/split) creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TaskGraphId(pub u32);

/// Which part of a training step a node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Forward,
    Backward,
    Apply,
    Save,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "fwd",
            Phase::Backward => "bwd",
            Phase::Apply => "apply",
            Phase::Save => "save",
        }
    }
}

/// A strategy scope: its name and the strategy it was opened with.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGraph {
    pub name: String,
    pub strategy: Strategy,
    pub device_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Replicate,
    Split,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Shape,
    pub dtype: DType,
    pub taskgraph: TaskGraphId,
    pub phase: Phase,
}

/// A whole training graph. `loss` is a scalar; `grads` pairs each parameter with the node
/// holding its gradient once autodiff has run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub taskgraphs: Vec<TaskGraph>,
    pub outputs: Vec<(String, NodeId)>,
    pub loss: Option<NodeId>,
    pub grads: Vec<(NodeId, NodeId)>,
    /// Forward values the user marked for activation recomputation (`m.checkpoint(t)`): kept
    /// for backward when `gradient_checkpoint.type='collection'`, everything else recomputed.
    pub checkpoints: Vec<NodeId>,
}

impl Graph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn ids(&self) -> impl DoubleEndedIterator<Item = NodeId> + '_ {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// Parameter nodes in creation order, with their names.
    pub fn parameters(&self) -> Vec<(NodeId, &str)> {
        self.ids()
            .filter_map(|id| match &self.node(id).op {
                Op::Parameter { name, .. } => Some((id, name.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Input nodes in creation order, with their names.
    pub fn inputs(&self) -> Vec<(NodeId, &str)> {
        self.ids()
            .filter_map(|id| match &self.node(id).op {
                Op::Input { name, .. } => Some((id, name.as_str())),
                _ => None,
            })
            .collect()
    }

    /// What a rewriting pass returns: `nodes`, with this graph's TaskGraphs, and its outputs,
    /// loss, gradients and checkpoints carried over through `map` (old id -> new id).
    pub fn rewritten(&self, nodes: Vec<Node>, map: impl Fn(NodeId) -> NodeId) -> Graph {
        Graph {
            nodes,
            taskgraphs: self.taskgraphs.clone(),
            outputs: self
                .outputs
                .iter()
                .map(|(n, id)| (n.clone(), map(*id)))
                .collect(),
            loss: self.loss.map(&map),
            grads: self.grads.iter().map(|&(p, g)| (map(p), map(g))).collect(),
            checkpoints: self.checkpoints.iter().map(|&c| map(c)).collect(),
        }
    }

    /// Append a node whose type has already been inferred (passes use this).
    pub fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId(self.nodes.len() as u32 - 1)
    }

    /// For each node, how many nodes read it (outputs, loss and grads count as readers).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                uses[i.index()] += 1;
            }
        }
        for (_, id) in &self.outputs {
            uses[id.index()] += 1;
        }
        if let Some(l) = self.loss {
            uses[l.index()] += 1;
        }
        for (_, g) in &self.grads {
            uses[g.index()] += 1;
        }
        uses
    }
}
