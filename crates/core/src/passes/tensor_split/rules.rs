//! The placement rules of `tensor_split`: for each op kind, given its inputs' placements, the
//! output's placement and what each input needs first. Parameters are undecided until a rule
//! decides them. Outside split TaskGraphs every value is replicated.

use super::{Conv, Expand, NodePlan, Place, SplitOptions};

#[path = "matmul_rules.rs"]
mod matmul_rules;
#[path = "shape_rules.rs"]
mod shape_rules;
#[path = "vocab_experts.rs"]
mod vocab_experts;
use crate::error::{Error, Result};
use crate::ir::{Graph, NodeId, Op, ReduceOp, Strategy, UnaryOp};

/// Every node's plan for a group of `n` devices (parameters: `out` is their placement).
pub(super) fn analyse(g: &Graph, n: usize, how: SplitOptions) -> Result<Vec<NodePlan>> {
    let mut a = Analysis {
        g,
        n,
        sequence: how.sequence,
        colocate: how.colocate,
        places: vec![None; g.nodes.len()],
        readers: readers(g),
    };
    let mut plans = Vec::with_capacity(g.nodes.len());
    for id in g.ids() {
        let node = g.node(id);
        let tg = &g.taskgraphs[node.taskgraph.0 as usize];
        let plan = match node.op {
            Op::Parameter { .. } => plan(Place::Rep, vec![], &node.op),
            _ if tg.strategy == Strategy::Split && tg.device_count == n => a.rule(id)?,
            Op::Input { .. } if a.colocate && a.read_by_replicate(id) => a.row_input(id)?,
            _ if a.colocate => a.data_parallel(id)?,
            _ => a.replicated(id),
        };
        if !matches!(node.op, Op::Parameter { .. }) {
            a.places[id.index()] = Some(plan.out);
        }
        plans.push(plan);
    }
    for (id, _) in g.parameters() {
        plans[id.index()].out = a.places[id.index()].unwrap_or(Place::Rep);
    }
    Ok(plans)
}

fn readers(g: &Graph) -> Vec<Vec<NodeId>> {
    let mut r = vec![Vec::new(); g.nodes.len()];
    for id in g.ids() {
        for x in &g.node(id).inputs {
            r[x.index()].push(id);
        }
    }
    r
}

struct Analysis<'a> {
    g: &'a Graph,
    n: usize,
    /// `split.sequence_parallel`: partial sums outside the tensor-parallel regions are
    /// reduce-scattered along their rows, not all-reduced.
    sequence: bool,
    /// `cluster.colocate_split_and_replicate`: replicate TaskGraphs run data-parallel on the
    /// split devices.
    colocate: bool,
    /// None: a parameter no rule has decided yet.
    places: Vec<Option<Place>>,
    readers: Vec<Vec<NodeId>>,
}

fn to_rep(p: Place) -> Conv {
    match p {
        Place::Rep => Conv::Keep,
        Place::Partial => Conv::Reduce,
        Place::Shard { .. } => Conv::Gather,
    }
}

fn plan(out: Place, convs: Vec<Conv>, op: &Op) -> NodePlan {
    NodePlan {
        out,
        convs,
        op: op.clone(),
        expand: None,
    }
}

impl Analysis<'_> {
    fn dims(&self, id: NodeId) -> Vec<usize> {
        self.g.node(id).shape.to_vec()
    }

    /// The placement of input `x`, deciding an undecided parameter as replicated.
    fn place(&mut self, x: NodeId) -> Place {
        *self.places[x.index()].get_or_insert(Place::Rep)
    }

    fn undecided(&self, x: NodeId) -> bool {
        self.places[x.index()].is_none()
    }

    /// Decide parameter `p` as sharded on `axis`; the axis must cut into `groups x n` parts.
    fn decide_shard(
        &mut self,
        p: NodeId,
        axis: usize,
        groups: usize,
        reader: NodeId,
    ) -> Result<()> {
        let len = self.dims(p)[axis];
        if !len.is_multiple_of(groups * self.n) {
            let packed = if groups > 1 {
                format!(" ({groups} packed parts of {})", len / groups)
            } else {
                String::new()
            };
            return Err(self.error(
                reader,
                format!(
                    "parameter '{}' has {len} {} on axis {axis}{packed}, which do not divide over \
                     {} devices",
                    self.param_name(p),
                    if axis == 0 { "rows" } else { "columns" },
                    self.n
                ),
            ));
        }
        self.places[p.index()] = Some(Place::Shard { axis, groups });
        Ok(())
    }

    /// Whether a node's first reader is in a replicate TaskGraph.
    fn read_by_replicate(&self, id: NodeId) -> bool {
        self.readers[id.index()].first().is_some_and(|&r| {
            let tg = self.g.node(r).taskgraph;
            self.g.taskgraphs[tg.0 as usize].strategy == Strategy::Replicate
        })
    }

    /// A colocated replicate TaskGraph's batch input: each device keeps its rows.
    fn row_input(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let rows = self.dims(id).first().copied().unwrap_or(0);
        if node.dtype != crate::ir::DType::F32 || !rows.is_multiple_of(self.n) {
            return Err(self.error(
                id,
                format!(
                    "a colocated replicate scope cuts its batch input's rows among {} devices: it \
                     needs f32 rows that divide, got {} {:?}",
                    self.n,
                    node.dtype,
                    self.dims(id)
                ),
            ));
        }
        Ok(NodePlan {
            expand: Some(Expand::RowShard),
            ..plan(Place::Shard { axis: 0, groups: 1 }, vec![], &node.op)
        })
    }

    /// Colocated replicate TaskGraphs: data-parallel on the split devices. Weights stay whole
    /// (their gradients, partial over the rows, are summed by `Copy`); values follow the rows.
    fn data_parallel(&mut self, id: NodeId) -> Result<NodePlan> {
        for &x in &self.g.node(id).inputs {
            self.place(x);
        }
        self.rule(id)
    }

    /// Outside split scopes: every input replicated.
    fn replicated(&mut self, id: NodeId) -> NodePlan {
        let node = self.g.node(id);
        let convs = node.inputs.iter().map(|&x| to_rep(self.place(x))).collect();
        plan(Place::Rep, convs, &node.op)
    }

    fn rule(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let op = &node.op;
        match op {
            Op::Input { .. } | Op::Fill { .. } => Ok(plan(Place::Rep, vec![], op)),
            Op::MatMul { trans_a, trans_b } => self.matmul(id, *trans_a, *trans_b),
            Op::Binary(b) => self.binary(id, *b),
            Op::Unary(u) => {
                let linear = *u == UnaryOp::Neg;
                self.pointwise(id, linear)
            }
            Op::Scale { .. } => self.pointwise(id, true),
            Op::Dropout { p, .. } => {
                if *p > 0.0 && matches!(self.place(node.inputs[0]), Place::Shard { .. }) {
                    return Err(self.error(
                        id,
                        "dropout with p > 0 on a sharded value (its mask is a function of the \
                         element index of the whole tensor)"
                            .into(),
                    ));
                }
                self.pointwise(id, false)
            }
            Op::Reshape { shape } => self.reshape(id, shape),
            Op::Permute { perm } => {
                let out = match self.place(node.inputs[0]) {
                    Place::Shard { axis, groups } => Place::Shard {
                        axis: perm.iter().position(|&p| p == axis).unwrap_or(axis),
                        groups,
                    },
                    p => p,
                };
                Ok(plan(out, vec![Conv::Keep], op))
            }
            Op::Reduce {
                op: r,
                axis,
                keepdim,
            } => self.reduce(id, *r, *axis, *keepdim),
            Op::Softmax => self.last_axis_free(id),
            Op::LayerNorm { .. } => self.layer_norm(id),
            Op::CausalAttention { heads } => self.attention(id, *heads),
            Op::Embedding => self.embedding(id),
            Op::CrossEntropy => self.cross_entropy(id),
            Op::Argmax => self.argmax(id),
            Op::MoeDispatch {
                top_k,
                capacity_factor,
                ..
            } => self.moe_dispatch(id, *top_k, *capacity_factor),
            Op::MoeCombine { .. } => self.moe_combine(id),
            _ => self.no_rule(id),
        }
    }

    /// Ops without a sharding rule: partial sums are reduced first, shards are an error.
    fn no_rule(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let mut convs = Vec::new();
        for &x in &node.inputs {
            match self.place(x) {
                Place::Shard { axis, .. } => {
                    return Err(self.error(
                        id,
                        format!(
                            "{} has no sharding rule for an input sharded on axis {axis}",
                            node.op.name()
                        ),
                    ));
                }
                p => convs.push(to_rep(p)),
            }
        }
        Ok(plan(Place::Rep, convs, &node.op))
    }

    /// Elementwise one-input ops keep a shard; a partial sum passes only through linear ones.
    fn pointwise(&mut self, id: NodeId, linear: bool) -> Result<NodePlan> {
        let node = self.g.node(id);
        let x = node.inputs[0];
        Ok(match self.place(x) {
            Place::Partial if !linear && self.sequence => {
                let (p, conv) = self.scatter(id, x)?;
                plan(p, vec![conv], &node.op)
            }
            Place::Partial if !linear => plan(Place::Rep, vec![Conv::Reduce], &node.op),
            p => plan(p, vec![Conv::Keep], &node.op),
        })
    }

    /// Sequence parallelism: a partial sum becomes the sum's shard along its rows (the axis
    /// before the channels) by a reduce-scatter.
    fn scatter(&mut self, id: NodeId, x: NodeId) -> Result<(Place, Conv)> {
        let dims = self.dims(x);
        let Some(axis) = dims.len().checked_sub(2) else {
            return Err(self.error(id, "sequence parallelism needs a value with rows".into()));
        };
        if !dims[axis].is_multiple_of(self.n) {
            return Err(self.error(
                id,
                format!(
                    "sequence parallelism: {} rows (axis {axis} of {dims:?}) do not divide over {} \
                     devices",
                    dims[axis], self.n
                ),
            ));
        }
        Ok((
            Place::Shard { axis, groups: 1 },
            Conv::ReduceScatter { axis },
        ))
    }

    /// Softmax normalises the last axis: a shard elsewhere is kept.
    fn last_axis_free(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let last = node.shape.rank().saturating_sub(1);
        match self.place(node.inputs[0]) {
            Place::Shard { axis, .. } if axis == last => self.no_rule(id),
            Place::Partial => Ok(plan(Place::Rep, vec![Conv::Reduce], &node.op)),
            p => Ok(plan(p, vec![Conv::Keep], &node.op)),
        }
    }

    /// Layer norm over the last axis with replicated weight and bias, so every device computes
    /// the exact result: on a replicated input (a partial sum is reduced), or rows sharded by
    /// sequence parallelism (weight and bias then read through `Copy`: their gradients are
    /// partial sums over the rows).
    fn layer_norm(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let (x, w, b) = (node.inputs[0], node.inputs[1], node.inputs[2]);
        let last = node.shape.rank() - 1;
        let (px, conv) = match self.place(x) {
            Place::Partial if self.sequence => self.scatter(id, x)?,
            Place::Partial => (Place::Rep, Conv::Reduce),
            p => (p, Conv::Keep),
        };
        if self.place(w) != Place::Rep || self.place(b) != Place::Rep {
            return self.no_rule(id);
        }
        match px {
            Place::Rep => Ok(plan(
                Place::Rep,
                vec![conv, Conv::Keep, Conv::Keep],
                &node.op,
            )),
            Place::Shard { axis, .. } if axis != last => {
                Ok(plan(px, vec![conv, Conv::Copy, Conv::Copy], &node.op))
            }
            _ => self.no_rule(id),
        }
    }

    fn reduce(&mut self, id: NodeId, r: ReduceOp, axis: usize, keep: bool) -> Result<NodePlan> {
        let node = self.g.node(id);
        let out = match self.place(node.inputs[0]) {
            Place::Rep => Place::Rep,
            Place::Partial if r != ReduceOp::Max => Place::Partial,
            Place::Partial => return Ok(plan(Place::Rep, vec![Conv::Reduce], &node.op)),
            Place::Shard { axis: s, .. } if s == axis && r == ReduceOp::Sum => Place::Partial,
            Place::Shard { axis: s, .. } if s == axis => return self.no_rule(id),
            Place::Shard { axis: s, groups } => Place::Shard {
                axis: if !keep && axis < s { s - 1 } else { s },
                groups,
            },
        };
        Ok(plan(out, vec![Conv::Keep], &node.op))
    }

    /// Attention over q|k|v packed and sharded by head: each device attends with its heads.
    fn attention(&mut self, id: NodeId, heads: usize) -> Result<NodePlan> {
        let node = self.g.node(id);
        let last = node.shape.rank() - 1;
        match self.place(node.inputs[0]) {
            Place::Shard { axis, groups: 3 } if axis == last => {
                if !heads.is_multiple_of(self.n) {
                    return Err(self.error(
                        id,
                        format!(
                            "{heads} attention heads do not divide over {} devices",
                            self.n
                        ),
                    ));
                }
                let op = Op::CausalAttention {
                    heads: heads / self.n,
                };
                let out = Place::Shard { axis, groups: 1 };
                Ok(plan(out, vec![Conv::Keep], &op))
            }
            Place::Partial => Ok(plan(Place::Rep, vec![Conv::Reduce], &node.op)),
            Place::Rep => Ok(plan(Place::Rep, vec![Conv::Keep], &node.op)),
            Place::Shard { .. } => self.no_rule(id),
        }
    }

    fn param_name(&self, p: NodeId) -> String {
        match &self.g.node(p).op {
            Op::Parameter { name, .. } => name.clone(),
            _ => p.to_string(),
        }
    }

    /// The layer a node belongs to, for errors: its nearest parameter's name without the
    /// last component (`h.0.mlp.c_fc.weight` -> `h.0.mlp.c_fc`).
    fn layer(&self, id: NodeId) -> String {
        let mut frontier = vec![id];
        for _ in 0..4 {
            let mut next = Vec::new();
            for &f in &frontier {
                for &x in &self.g.node(f).inputs {
                    if let Op::Parameter { name, .. } = &self.g.node(x).op {
                        return name
                            .rsplit_once('.')
                            .map_or(name.as_str(), |(l, _)| l)
                            .to_string();
                    }
                    next.push(x);
                }
            }
            frontier = next;
        }
        format!("{id}")
    }

    fn error(&self, id: NodeId, what: String) -> Error {
        let node = self.g.node(id);
        let tg = &self.g.taskgraphs[node.taskgraph.0 as usize].name;
        Error::unsupported(
            format!("tensor parallelism of {}", node.op.name()),
            format!(
                "split scope '{tg}', layer '{}', op {} {id}: {what}",
                self.layer(id),
                node.op.name()
            ),
        )
    }
}
