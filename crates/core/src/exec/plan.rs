//! Device programs: for one pipeline stage, the actions that run the forward and the backward of
//! one micro-batch, and the forward-only evaluation. Cross-stage tensors travel by `send` /
//! `recv`; batch inputs are loaded by each stage that reads them; every transient buffer is freed
//! right after its last use. Plain data with a stable text form; the interpreter runs it.

use crate::ir::StageMap;
use crate::ir::{Graph, NodeId, Op, Phase};
use std::collections::HashMap;
use std::fmt;

/// Index of a device in the plan's device list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Copy a batch input onto the device.
    Load(NodeId),
    /// Receive a tensor computed by another stage.
    Recv { node: NodeId, from_stage: usize },
    /// Run one node's kernel.
    Compute(NodeId),
    /// Send a tensor to a stage that reads it (buffered: does not wait for the receiver).
    Send { node: NodeId, to_stage: usize },
    /// Return a buffer to the pool (its last reader has run).
    Free(NodeId),
    /// Copy a parameter from host memory onto the device for this program (offload); freed
    /// after its last reader in the same program.
    Fetch(NodeId),
    /// Add this micro-batch's gradient into the parameter's accumulated gradient, as soon as it
    /// is final (so its all-reduce bucket can start while backward goes on). `take`: this is the
    /// gradient's last reader, so its buffer may be moved instead of copied.
    AccumulateGrad {
        param: NodeId,
        grad: NodeId,
        take: bool,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Load(n) => write!(f, "load {n}"),
            Action::Recv { node, from_stage } => write!(f, "recv {node} <s{from_stage}"),
            Action::Compute(n) => write!(f, "compute {n}"),
            Action::Send { node, to_stage } => write!(f, "send {node} >s{to_stage}"),
            Action::Free(n) => write!(f, "free {n}"),
            Action::Fetch(n) => write!(f, "fetch {n}"),
            Action::AccumulateGrad { param, grad, take } => {
                write!(
                    f,
                    "accumulate {param} += {grad}{}",
                    if *take { " (move)" } else { "" }
                )
            }
        }
    }
}

/// Which list of a stage's program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// Forward of one micro-batch in training (keeps what backward reads).
    Forward,
    /// Backward of one micro-batch, ending with gradient accumulation.
    Backward,
    /// Forward only, for evaluation.
    Eval,
}

/// One stage's programs.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub stage: usize,
    pub forward: Vec<Action>,
    pub backward: Vec<Action>,
    pub eval: Vec<Action>,
}

impl Program {
    pub fn actions(&self, kind: ProgramKind) -> &[Action] {
        match kind {
            ProgramKind::Forward => &self.forward,
            ProgramKind::Backward => &self.backward,
            ProgramKind::Eval => &self.eval,
        }
    }

    pub fn list_mut(&mut self, kind: ProgramKind) -> &mut Vec<Action> {
        match kind {
            ProgramKind::Forward => &mut self.forward,
            ProgramKind::Backward => &mut self.backward,
            ProgramKind::Eval => &mut self.eval,
        }
    }

    /// `offload`: parameters live in host memory and each program fetches what it reads.
    pub fn build(graph: &Graph, stages: &StageMap, stage: usize, offload: bool) -> Program {
        let (forward, backward) = build_list(graph, stages, stage, true, offload);
        let (eval, _) = build_list(graph, stages, stage, false, offload);
        Program {
            stage,
            forward,
            backward,
            eval,
        }
    }
}

/// Values that must survive a program: loss, outputs and, in training, gradients.
fn roots(graph: &Graph, train: bool) -> Vec<NodeId> {
    let mut r: Vec<NodeId> = graph.outputs.iter().map(|(_, id)| *id).collect();
    r.extend(graph.loss);
    if train {
        r.extend(graph.grads.iter().map(|(_, g)| *g));
    }
    r
}

fn needed(graph: &Graph, train: bool) -> Vec<bool> {
    let mut need = vec![false; graph.nodes.len()];
    for r in roots(graph, train) {
        need[r.index()] = true;
    }
    for id in graph.ids().rev() {
        let n = graph.node(id);
        if need[id.index()] && (train || n.phase == Phase::Forward) {
            for x in &n.inputs {
                need[x.index()] = true;
            }
        }
    }
    need
}

/// The ordered actions of one stage, as (forward-phase actions, backward-phase actions).
fn build_list(
    graph: &Graph,
    map: &StageMap,
    s: usize,
    train: bool,
    offload: bool,
) -> (Vec<Action>, Vec<Action>) {
    let need = needed(graph, train);
    let here = |id: NodeId| map.stage_of[id.index()] == s;
    // Stages reading each node (a gradient is read by its parameter's stage).
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
    for id in graph.ids().filter(|i| need[i.index()]) {
        for x in &graph.node(id).inputs {
            readers[x.index()].push(map.stage_of[id.index()]);
        }
    }
    if train {
        for &(p, g) in &graph.grads {
            readers[g.index()].push(map.stage_of[p.index()]);
        }
    }
    let mut have = vec![false; graph.nodes.len()];
    // Offload: parameters fetched so far, per phase (backward fetches again what it reads).
    let mut fetched = [
        vec![false; graph.nodes.len()],
        vec![false; graph.nodes.len()],
    ];
    let mut fetch = |x: NodeId, bwd: bool, list: &mut Vec<(Action, bool)>| {
        if offload && !std::mem::replace(&mut fetched[bwd as usize][x.index()], true) {
            list.push((Action::Fetch(x), bwd));
        }
    };
    let mut list: Vec<(Action, bool)> = Vec::new(); // (action, is backward phase)
    // Batch inputs are loaded by each stage that reads them (below), never sent.
    let is_input = |id: NodeId| matches!(graph.node(id).op, Op::Input { .. });
    for id in graph
        .ids()
        .filter(|i| need[i.index()] && here(*i) && !is_input(*i))
    {
        let n = graph.node(id);
        let bwd = n.phase != Phase::Forward;
        for &x in &n.inputs {
            if matches!(graph.node(x).op, Op::Parameter { .. }) && here(x) {
                fetch(x, bwd, &mut list);
            }
            if have[x.index()] {
                continue;
            }
            have[x.index()] = true;
            match graph.node(x).op {
                Op::Input { .. } => list.push((Action::Load(x), bwd)),
                Op::Parameter { .. } if here(x) => {}
                _ if here(x) => {}
                _ => list.push((
                    Action::Recv {
                        node: x,
                        from_stage: map.stage_of[x.index()],
                    },
                    bwd,
                )),
            }
        }
        if !matches!(n.op, Op::Parameter { .. }) && !have[id.index()] {
            list.push((
                if matches!(n.op, Op::Input { .. }) {
                    Action::Load(id)
                } else {
                    Action::Compute(id)
                },
                bwd,
            ));
        }
        have[id.index()] = true;
        let mut to: Vec<usize> = readers[id.index()]
            .iter()
            .copied()
            .filter(|&t| t != s)
            .collect();
        to.sort_unstable();
        to.dedup();
        if !to.is_empty() && matches!(n.op, Op::Parameter { .. }) {
            fetch(id, bwd, &mut list);
        }
        list.extend(to.into_iter().map(|t| {
            (
                Action::Send {
                    node: id,
                    to_stage: t,
                },
                bwd,
            )
        }));
        if train {
            for &(p, _) in graph.grads.iter().filter(|(p, g)| *g == id && here(*p)) {
                list.push((
                    Action::AccumulateGrad {
                        param: p,
                        grad: id,
                        take: false,
                    },
                    true,
                ));
            }
        }
    }
    if train {
        // Gradients computed on another stage arrive at the end of this stage's backward.
        for &(p, g) in graph.grads.iter().filter(|(p, g)| here(*p) && !here(*g)) {
            if !have[g.index()] {
                have[g.index()] = true;
                list.push((
                    Action::Recv {
                        node: g,
                        from_stage: map.stage_of[g.index()],
                    },
                    true,
                ));
            }
            list.push((
                Action::AccumulateGrad {
                    param: p,
                    grad: g,
                    take: false,
                },
                true,
            ));
        }
    }
    place_frees(graph, list, &roots(graph, false))
}

/// Insert `Free` after each value's last use on this stage. `kept` (loss and outputs) stay for
/// the caller to read; gradients go once accumulated or sent. Local parameters are never
/// loaded, received or computed, so they are never freed, unless fetched from host memory
/// (offload): liveness is per definition, and each phase's `Fetch` defines the parameter again,
/// freed after that phase's last reader.
fn place_frees(
    graph: &Graph,
    list: Vec<(Action, bool)>,
    kept: &[NodeId],
) -> (Vec<Action>, Vec<Action>) {
    // (value, index of the action defining it, index of its last reader)
    let mut defs: Vec<(NodeId, usize, Option<usize>)> = Vec::new();
    let mut current: HashMap<NodeId, usize> = HashMap::new();
    // The definition each gradient accumulation read, to decide whether it may move it.
    let mut accumulated: HashMap<usize, usize> = HashMap::new();
    for (i, (a, _)) in list.iter().enumerate() {
        let mut read = |x: NodeId| current.get(&x).map(|&d| defs[d].2 = Some(i));
        match a {
            Action::Compute(x) => {
                for &y in &graph.node(*x).inputs {
                    read(y);
                }
            }
            Action::Send { node, .. } => {
                read(*node);
            }
            Action::AccumulateGrad { grad, .. } => {
                if let Some(&d) = current.get(grad) {
                    defs[d].2 = Some(i);
                    accumulated.insert(i, d);
                }
            }
            Action::Load(_) | Action::Recv { .. } | Action::Fetch(_) | Action::Free(_) => {}
        }
        if let Action::Load(x)
        | Action::Recv { node: x, .. }
        | Action::Compute(x)
        | Action::Fetch(x) = a
        {
            current.insert(*x, defs.len());
            defs.push((*x, i, None));
        }
    }
    let mut frees_after: Vec<Vec<NodeId>> = vec![Vec::new(); list.len()];
    for &(x, at, last) in defs.iter().filter(|(x, _, _)| !kept.contains(x)) {
        frees_after[last.unwrap_or(at)].push(x);
    }
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    let sharers = |g: NodeId| graph.grads.iter().filter(|(_, x)| *x == g).count();
    for (i, (mut a, is_bwd)) in list.into_iter().enumerate() {
        if let Action::AccumulateGrad { grad, take, .. } = &mut a {
            let last = accumulated.get(&i).and_then(|&d| defs[d].2);
            *take = last == Some(i) && sharers(*grad) == 1;
        }
        let out = if is_bwd { &mut bwd } else { &mut fwd };
        out.push(a);
        frees_after[i].sort();
        out.extend(frees_after[i].iter().map(|x| Action::Free(*x)));
    }
    (fwd, bwd)
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, list) in [
            ("forward", &self.forward),
            ("backward", &self.backward),
            ("eval", &self.eval),
        ] {
            writeln!(f, "stage {} {name} ({} actions)", self.stage, list.len())?;
            for a in list.iter() {
                writeln!(f, "  {a}")?;
            }
        }
        Ok(())
    }
}
