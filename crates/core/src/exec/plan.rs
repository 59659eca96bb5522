//! A device program: the list of actions one device executes for a step, with buffer frees
//! placed by liveness so the memory planner can reuse buffers. The plan is plain data with a
//! stable text form; the interpreter executes it and nothing else.

use crate::ir::{Graph, NodeId, Op, Phase};
use std::fmt;

/// Index of a device in the plan's device list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Copy a batch input onto the device.
    Load(NodeId),
    /// Run one node's kernel.
    Compute(NodeId),
    /// Return a node's buffer to the pool (its last reader has run).
    Free(NodeId),
    /// Add this micro-batch's gradient into the parameter's accumulated gradient.
    AccumulateGrad { param: NodeId, grad: NodeId },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Load(n) => write!(f, "load {n}"),
            Action::Compute(n) => write!(f, "compute {n}"),
            Action::Free(n) => write!(f, "free {n}"),
            Action::AccumulateGrad { param, grad } => write!(f, "accumulate {param} += {grad}"),
        }
    }
}

/// What a program must leave alive after it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    /// Forward and backward: keeps loss, outputs and accumulated gradients.
    Train,
    /// Forward only: keeps loss and outputs.
    Eval,
}

/// One device's program for one micro-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub device: DeviceId,
    pub kind: ProgramKind,
    pub actions: Vec<Action>,
}

impl Program {
    /// Build the program computing everything `kind` needs, freeing each transient buffer right
    /// after its last reader. Parameters are persistent and never freed.
    pub fn build(graph: &Graph, device: DeviceId, kind: ProgramKind) -> Program {
        let keep = roots(graph, kind);
        let needed = reachable(graph, &keep, kind);
        let mut last_use = vec![None; graph.nodes.len()];
        for id in graph.ids().filter(|i| needed[i.index()]) {
            for x in &graph.node(id).inputs {
                last_use[x.index()] = Some(id);
            }
        }
        let mut actions = Vec::new();
        let persistent = |id: NodeId| matches!(graph.node(id).op, Op::Parameter { .. });
        for id in graph.ids().filter(|i| needed[i.index()]) {
            match graph.node(id).op {
                Op::Parameter { .. } => continue,
                Op::Input { .. } => actions.push(Action::Load(id)),
                _ => actions.push(Action::Compute(id)),
            }
            let mut dead: Vec<NodeId> = graph.node(id).inputs.clone();
            dead.sort();
            dead.dedup();
            for x in dead {
                if last_use[x.index()] == Some(id) && !persistent(x) && !keep.contains(&x) {
                    actions.push(Action::Free(x));
                }
            }
            if last_use[id.index()].is_none() && !keep.contains(&id) {
                actions.push(Action::Free(id));
            }
        }
        if kind == ProgramKind::Train {
            for &(param, grad) in &graph.grads {
                actions.push(Action::AccumulateGrad { param, grad });
            }
            // Two parameters can share one gradient node (`a + b`): free each node once.
            let mut grads: Vec<NodeId> = graph.grads.iter().map(|(_, g)| *g).collect();
            grads.sort();
            grads.dedup();
            let kept = roots(graph, ProgramKind::Eval);
            actions.extend(
                grads
                    .into_iter()
                    .filter(|g| !kept.contains(g))
                    .map(Action::Free),
            );
        }
        Program {
            device,
            kind,
            actions,
        }
    }
}

/// Nodes whose values must survive the program.
fn roots(graph: &Graph, kind: ProgramKind) -> Vec<NodeId> {
    let mut r: Vec<NodeId> = graph.outputs.iter().map(|(_, id)| *id).collect();
    r.extend(graph.loss);
    if kind == ProgramKind::Train {
        r.extend(graph.grads.iter().map(|(_, g)| *g));
    }
    r
}

fn reachable(graph: &Graph, roots: &[NodeId], kind: ProgramKind) -> Vec<bool> {
    let mut need = vec![false; graph.nodes.len()];
    for r in roots {
        need[r.index()] = true;
    }
    for id in graph.ids().rev() {
        let n = graph.node(id);
        if need[id.index()] && (kind == ProgramKind::Train || n.phase == Phase::Forward) {
            for x in &n.inputs {
                need[x.index()] = true;
            }
        }
    }
    need
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "device {} {:?} ({} actions)",
            self.device.0,
            self.kind,
            self.actions.len()
        )?;
        for a in &self.actions {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}
