//! Tensor parallelism: EPL's `split` scope as a pass over the IR. `tensor_split(g, index, n,
//! how)` is the graph tensor-parallel device `index` of `n` runs. Every value of a split TaskGraph gets a
//! placement (replicated, sharded on an axis, or a partial sum); parameters take the placement
//! their first reader asks for (a linear reading a replicated input is column-parallel, one
//! reading a column-parallel output is row-parallel: Megatron's pairing) and are cut from the
//! tensor the unsplit model initialises. Where a reader needs another placement the pass
//! inserts a collective op (`TpReduce`, `TpGather`, `TpShard`), and `TpCopy` marks a replicated
//! value read by sharded computation so that backward all-reduces its gradient.
//!
//! The rules, one per op kind, are in `rules.rs` (with `shape_rules.rs` and `vocab_experts.rs`);
//! an op that meets a sharded input and has no rule is an error naming it (never silently
//! replicated).

mod rules;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::ir::{
    Cut, Graph, Init, Node, NodeId, Op, Phase, Shape, Strategy, TensorType, TokenSlice, infer,
};
use std::collections::HashMap;

/// Where one value lives across the tensor-parallel group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Place {
    /// Every device holds all of it.
    Rep,
    /// Every device holds its part of `axis` (read as `[groups, parts, chunk]`, see `Cut`).
    Shard { axis: usize, groups: usize },
    /// Every device holds a summand; the value is their sum.
    Partial,
}

/// What a reader does to an input before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Conv {
    Keep,
    /// Identity forward, all-reduce of the gradient.
    Copy,
    /// Partial -> replicated (all-reduce).
    Reduce,
    /// Sharded -> replicated (all-gather).
    Gather,
    /// Replicated -> this device's shard.
    Shard {
        axis: usize,
        groups: usize,
    },
    /// Partial -> replicated, read by sharded computation (all-reduce, then `Copy`).
    ReduceCopy,
    /// Sharded -> replicated for a reader whose gradient is partial (all-gather forward,
    /// reduce-scatter backward: sequence parallelism).
    GatherPartial,
    /// Partial -> sharded on `axis` (reduce-scatter: sequence parallelism).
    ReduceScatter {
        axis: usize,
    },
}

/// The decision for one node: its output placement, a conversion per input, its local op
/// (or the several ops that replace it).
#[derive(Debug, Clone)]
pub(crate) struct NodePlan {
    pub out: Place,
    pub convs: Vec<Conv>,
    pub op: Op,
    pub expand: Option<Expand>,
}

/// Ops that become several under vocabulary parallelism.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Expand {
    /// Embedding of a vocabulary-sharded table: this shard's one-hot of the indices times its
    /// rows (a partial sum: rows of other shards read zero).
    VocabEmbedding,
    /// Cross-entropy of vocabulary-sharded logits without gathering them: a distributed max
    /// and log-sum-exp, the label picked by the shard that holds it; `valid` columns of the
    /// (padded) vocabulary count.
    VocabCrossEntropy { valid: usize },
    /// Argmax of vocabulary-sharded values without gathering them: the global max of each row
    /// (`TpMax`), each shard's bid of its first column holding it, the best bid (`TpMax`).
    VocabArgmax { valid: usize },
    /// A batch input read by a colocated replicate TaskGraph: loaded whole, then cut by rows.
    RowShard,
    /// Dispatch of this device's tokens into every expert's slots, then an all-to-all that
    /// leaves each device the slots of its own experts (summed over the senders: each slot
    /// holds one token, the other senders' copies are zero).
    MoeDispatch { top_k: usize, capacity_factor: f32 },
    /// An all-to-all that hands every device all experts' slots, the combine of its tokens,
    /// and an all-gather of every device's tokens.
    MoeCombine,
}

/// The tensor-parallel width of a model: the device count of its split scopes (all equal), or
/// 1 without any split over several devices.
pub fn tp_width(g: &Graph) -> Result<usize> {
    let mut width = 1;
    for tg in &g.taskgraphs {
        if tg.strategy != Strategy::Split || tg.device_count <= 1 {
            continue;
        }
        if width > 1 && tg.device_count != width {
            return Err(Error::config(
                "strategy",
                format!(
                    "split scope '{}' has deviceCount {} but an earlier split scope has {width}; \
                     every split scope of a model must use the same deviceCount",
                    tg.name, tg.device_count
                ),
            ));
        }
        width = tg.device_count;
    }
    Ok(width)
}

/// Whether parameter `p` of a split graph is a shard (its gradient is this device's alone).
pub fn is_shard(g: &Graph, p: NodeId) -> bool {
    matches!(
        &g.node(p).op,
        Op::Parameter {
            init: Init::Shard { .. },
            ..
        }
    )
}

/// How `tensor_split` treats what lies between and beside the tensor-parallel regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SplitOptions {
    /// `split.sequence_parallel`: values between the tensor-parallel regions are sharded along
    /// their sequence (rows) axis instead of replicated.
    pub sequence: bool,
    /// `cluster.colocate_split_and_replicate`: replicate TaskGraphs share the split devices
    /// and run data-parallel on them (the batch rows cut among the devices, weights whole,
    /// their gradients summed); their rows are all-gathered where a split layer reads them.
    pub colocate: bool,
}

/// The graph of tensor-parallel device `index` of `n` (the identity when `n` is 1).
pub fn tensor_split(g: Graph, index: usize, n: usize, how: SplitOptions) -> Result<Graph> {
    if n <= 1 {
        return Ok(g);
    }
    let plans = rules::analyse(&g, n, how)?;
    check_something_splits(&g, &plans, n)?;
    Emitter::new(&g, &plans, index, n).run()
}

/// A split scope in which nothing is sharded would silently run replicated: an error naming
/// its ops.
fn check_something_splits(g: &Graph, plans: &[NodePlan], n: usize) -> Result<()> {
    for (t, tg) in g.taskgraphs.iter().enumerate() {
        if tg.strategy != Strategy::Split || tg.device_count != n {
            continue;
        }
        let members: Vec<NodeId> = g
            .ids()
            .filter(|&id| g.node(id).taskgraph.0 as usize == t)
            .collect();
        let split = members
            .iter()
            .any(|id| matches!(plans[id.index()].out, Place::Shard { .. } | Place::Partial));
        if !members.is_empty() && !split {
            let mut ops: Vec<&str> = members
                .iter()
                .map(|&id| g.node(id).op.name())
                .filter(|&o| o != "input" && o != "parameter" && o != "fill")
                .collect();
            ops.dedup();
            return Err(Error::unsupported(
                format!("split scope '{}'", tg.name),
                format!(
                    "no op in split scope '{}' has a sharding rule for its inputs (ops: {}); \
                     weft never runs a split scope silently replicated: put a linear layer, \
                     attention or an embedding in it, or use replicate",
                    tg.name,
                    ops.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Builds the device's graph from the plans: parameters cut, conversions inserted.
struct Emitter<'a> {
    src: &'a Graph,
    plans: &'a [NodePlan],
    index: usize,
    n: usize,
    out: Graph,
    map: Vec<NodeId>,
    converted: HashMap<(NodeId, Conv), NodeId>,
}

impl<'a> Emitter<'a> {
    fn new(src: &'a Graph, plans: &'a [NodePlan], index: usize, n: usize) -> Self {
        let out = Graph {
            taskgraphs: src.taskgraphs.clone(),
            ..Graph::default()
        };
        Emitter {
            src,
            plans,
            index,
            n,
            out,
            map: Vec::with_capacity(src.nodes.len()),
            converted: HashMap::new(),
        }
    }

    fn run(mut self) -> Result<Graph> {
        for id in self.src.ids() {
            let node = self.src.node(id);
            let new = match &node.op {
                Op::Parameter { name, shape, init } => self.parameter(id, name, shape, init)?,
                _ => {
                    let plan = &self.plans[id.index()];
                    let mut inputs = Vec::with_capacity(node.inputs.len());
                    for (&x, &conv) in node.inputs.iter().zip(&plan.convs) {
                        inputs.push(self.convert(x, conv, node.taskgraph)?);
                    }
                    match plan.expand {
                        None => self.push(plan.op.clone(), &inputs, node.taskgraph)?,
                        Some(e) => self.expand(e, &plan.op, &inputs, node.taskgraph)?,
                    }
                }
            };
            self.map.push(new);
        }
        self.finish()
    }

    /// Loss and outputs leave the group replicated; checkpoints keep their nodes.
    fn finish(mut self) -> Result<Graph> {
        let src = self.src;
        let rep = |s: &mut Self, id: NodeId| -> Result<NodeId> {
            let conv = match s.plans[id.index()].out {
                Place::Rep => Conv::Keep,
                Place::Partial => Conv::Reduce,
                Place::Shard { .. } => Conv::Gather,
            };
            s.convert(id, conv, src.node(id).taskgraph)
        };
        let mut outputs = Vec::new();
        for (name, id) in &src.outputs {
            outputs.push((name.clone(), rep(&mut self, *id)?));
        }
        self.out.outputs = outputs;
        self.out.loss = match src.loss {
            Some(l) => Some(rep(&mut self, l)?),
            None => None,
        };
        self.out.checkpoints = src
            .checkpoints
            .iter()
            .map(|c| self.map[c.index()])
            .collect();
        if !src.grads.is_empty() {
            return Err(Error::internal("tensor_split runs before differentiation"));
        }
        Ok(self.out)
    }

    fn parameter(&mut self, id: NodeId, name: &str, shape: &Shape, init: &Init) -> Result<NodeId> {
        let tg = self.src.node(id).taskgraph;
        let Place::Shard { axis, groups } = self.plans[id.index()].out else {
            return self.push(self.src.node(id).op.clone(), &[], tg);
        };
        let full = shape.concrete()?;
        let cut = Cut {
            axis,
            groups,
            parts: self.n,
        };
        // An indivisible vocabulary is padded (see `rules::decide_shard`).
        let mut local = full.clone();
        local[axis] = crate::tensor::padded_len(full[axis], groups * self.n) / self.n;
        let op = Op::Parameter {
            name: name.to_string(),
            shape: Shape::fixed(&local),
            init: Init::Shard {
                base: Box::new(init.clone()),
                full,
                cut,
                index: self.index,
            },
        };
        self.push(op, &[], tg)
    }

    /// The new node holding old value `x` after `conv` (inserted once per value and kind).
    fn convert(&mut self, x: NodeId, conv: Conv, tg: crate::ir::TaskGraphId) -> Result<NodeId> {
        let have = self.map[x.index()];
        let cut = |axis, groups, parts| Cut {
            axis,
            groups,
            parts,
        };
        if let Some(&done) = self.converted.get(&(x, conv)) {
            return Ok(done);
        }
        let shard = |axis, groups| (cut(axis, groups, self.n), self.index);
        let op = match (conv, self.plans[x.index()].out) {
            (Conv::Keep, _) => return Ok(have),
            (Conv::Copy, _) => Op::TpCopy,
            (Conv::Reduce, _) => Op::TpReduce,
            (Conv::ReduceCopy, _) => {
                let reduced = self.convert(x, Conv::Reduce, tg)?;
                let copied = self.push(Op::TpCopy, &[reduced], tg)?;
                self.converted.insert((x, conv), copied);
                return Ok(copied);
            }
            (Conv::Gather, Place::Shard { axis, groups }) => {
                let (cut, index) = shard(axis, groups);
                Op::TpGather { cut, index }
            }
            (Conv::GatherPartial, Place::Shard { axis, groups }) => {
                let (cut, index) = shard(axis, groups);
                Op::TpGatherPartial { cut, index }
            }
            (Conv::Shard { axis, groups }, _) => {
                let (cut, index) = shard(axis, groups);
                Op::TpShard { cut, index }
            }
            (Conv::ReduceScatter { axis }, _) => {
                let (cut, index) = shard(axis, 1);
                Op::TpReduceScatter { cut, index }
            }
            (Conv::Gather | Conv::GatherPartial, p) => {
                return Err(Error::internal(format!(
                    "tensor_split: gather of a {p:?} value"
                )));
            }
        };
        let mut new = self.push(op, &[have], tg)?;
        // A gathered padded vocabulary is cut back to its real length.
        if let (Conv::Gather, Place::Shard { axis, .. }) = (conv, self.plans[x.index()].out) {
            let len = self.src.node(x).shape.to_vec()[axis];
            if self.out.node(new).shape.to_vec()[axis] != len {
                let slice = Op::Slice {
                    axis,
                    start: 0,
                    end: len,
                };
                new = self.push(slice, &[new], tg)?;
            }
        }
        self.converted.insert((x, conv), new);
        Ok(new)
    }

    /// The several ops that replace `op` (whose inputs are now `ins`): vocabulary parallelism's,
    /// expert parallelism's, a colocated batch input's row cut.
    fn expand(
        &mut self,
        e: Expand,
        op: &Op,
        ins: &[NodeId],
        tg: crate::ir::TaskGraphId,
    ) -> Result<NodeId> {
        let last =
            |s: &Self, id: NodeId| s.out.node(id).shape.to_vec().last().copied().unwrap_or(1);
        match e {
            Expand::VocabEmbedding => {
                let (table, idx) = (ins[0], ins[1]);
                let width = self.out.node(table).shape.to_vec()[0];
                let start = self.index * width;
                let hot = self.push(Op::VocabOneHot { start, width }, &[idx], tg)?;
                let mm = Op::MatMul {
                    trans_a: false,
                    trans_b: false,
                };
                self.push(mm, &[hot, table], tg)
            }
            // A batch input: loaded whole, then this device's rows kept.
            Expand::RowShard => {
                let whole = self.push(op.clone(), &[], tg)?;
                let cut = Cut {
                    axis: 0,
                    groups: 1,
                    parts: self.n,
                };
                let index = self.index;
                self.push(Op::TpShard { cut, index }, &[whole], tg)
            }
            Expand::MoeDispatch {
                top_k,
                capacity_factor,
            } => self.moe_dispatch(ins, top_k, capacity_factor, tg),
            Expand::MoeCombine => self.moe_combine(ins, tg),
            Expand::VocabCrossEntropy { valid } => {
                let (mut x, labels) = (ins[0], ins[1]);
                let width = last(self, x);
                let start = self.index * width;
                if width * self.n != valid {
                    let fill = -1e30;
                    x = self.push(Op::ColumnMask { start, valid, fill }, &[x], tg)?;
                }
                self.cross_entropy(x, labels, start, width, tg)
            }
            Expand::VocabArgmax { valid } => {
                let mut x = ins[0];
                let width = last(self, x);
                let start = self.index * width;
                if width * self.n != valid {
                    // Padding never holds the max unless every real column is -inf too, and
                    // then a real column's lower index wins the tie.
                    let fill = f32::NEG_INFINITY;
                    x = self.push(Op::ColumnMask { start, valid, fill }, &[x], tg)?;
                }
                let axis = self.out.node(x).shape.rank() - 1;
                let max = Op::Reduce {
                    op: crate::ir::ReduceOp::Max,
                    axis,
                    keepdim: false,
                };
                let m = self.push(max, &[x], tg)?;
                let m = self.push(Op::TpMax, &[m], tg)?;
                let bid = self.push(Op::ArgmaxBid { start }, &[x, m], tg)?;
                let bid = self.push(Op::TpMax, &[bid], tg)?;
                self.push(Op::BidIndex, &[bid], tg)
            }
        }
    }

    /// loss[i] = log(sum_j exp(x[i,j] - M[i])) - (x[i,label] - M[i]), every sum over the whole
    /// vocabulary by an all-reduce of the shards' sums; M is the all-reduced row max.
    fn cross_entropy(
        &mut self,
        x: NodeId,
        labels: NodeId,
        start: usize,
        width: usize,
        tg: crate::ir::TaskGraphId,
    ) -> Result<NodeId> {
        use crate::ir::{BinaryOp, ReduceOp, UnaryOp};
        let reduce = |op, keepdim| Op::Reduce {
            op,
            axis: 1,
            keepdim,
        };
        let m = self.push(reduce(ReduceOp::Max, true), &[x], tg)?;
        let m = self.push(Op::TpMax, &[m], tg)?;
        let z = self.push(Op::Binary(BinaryOp::Sub), &[x, m], tg)?;
        let e = self.push(Op::Unary(UnaryOp::Exp), &[z], tg)?;
        let s = self.push(reduce(ReduceOp::Sum, false), &[e], tg)?;
        let s = self.push(Op::TpReduce, &[s], tg)?;
        let lse = self.push(Op::Unary(UnaryOp::Log), &[s], tg)?;
        let hot = self.push(Op::VocabOneHot { start, width }, &[labels], tg)?;
        let picked = self.push(Op::Binary(BinaryOp::Mul), &[z, hot], tg)?;
        let picked = self.push(reduce(ReduceOp::Sum, false), &[picked], tg)?;
        let picked = self.push(Op::TpReduce, &[picked], tg)?;
        self.push(Op::Binary(BinaryOp::Sub), &[lse, picked], tg)
    }

    fn tokens(&self) -> TokenSlice {
        TokenSlice {
            index: self.index,
            parts: self.n,
        }
    }

    /// x [N/n, C] (this device's tokens), gates [N, E] -> this device's experts' slots
    /// [E/n, S, C].
    fn moe_dispatch(
        &mut self,
        ins: &[NodeId],
        top_k: usize,
        capacity_factor: f32,
        tg: crate::ir::TaskGraphId,
    ) -> Result<NodeId> {
        let tokens = self.tokens();
        let op = Op::MoeDispatch {
            top_k,
            capacity_factor,
            tokens,
        };
        let buf = self.push(op, ins, tg)?;
        let sent = self.push(Op::TpAllToAll, &[buf], tg)?;
        let [e, s, c] = self.dims3(sent)?;
        let by_sender = self.reshape(sent, &[self.n, e / self.n, s, c], tg)?;
        let sum = Op::Reduce {
            op: crate::ir::ReduceOp::Sum,
            axis: 0,
            keepdim: false,
        };
        self.push(sum, &[by_sender], tg)
    }

    /// buf [E/n, S, C] (this device's experts), gates [N, E] -> all tokens [N, C].
    fn moe_combine(&mut self, ins: &[NodeId], tg: crate::ir::TaskGraphId) -> Result<NodeId> {
        let (buf, gates) = (ins[0], ins[1]);
        let [e, s, c] = self.dims3(buf)?;
        let one = self.reshape(buf, &[1, e, s, c], tg)?;
        let to_all = Op::Expand {
            shape: Shape::fixed(&[self.n, e, s, c]),
        };
        let copies = self.push(to_all, &[one], tg)?;
        let back = self.push(Op::TpAllToAll, &[copies], tg)?;
        let all = self.reshape(back, &[self.n * e, s, c], tg)?;
        let tokens = self.tokens();
        let mine = self.push(Op::MoeCombine { tokens }, &[all, gates], tg)?;
        let rows = Op::TpGather {
            cut: Cut {
                axis: 0,
                groups: 1,
                parts: self.n,
            },
            index: self.index,
        };
        self.push(rows, &[mine], tg)
    }

    fn dims3(&self, id: NodeId) -> Result<[usize; 3]> {
        let d = self.out.node(id).shape.to_vec();
        d.try_into()
            .map_err(|d| Error::internal(format!("expert buffer {id}: dims {d:?}, not 3")))
    }

    fn reshape(&mut self, x: NodeId, dims: &[usize], tg: crate::ir::TaskGraphId) -> Result<NodeId> {
        let op = Op::Reshape {
            shape: Shape::fixed(dims),
        };
        self.push(op, &[x], tg)
    }

    fn push(&mut self, op: Op, inputs: &[NodeId], tg: crate::ir::TaskGraphId) -> Result<NodeId> {
        let types: Vec<TensorType> = inputs
            .iter()
            .map(|&i| {
                let n = self.out.node(i);
                TensorType {
                    shape: n.shape.clone(),
                    dtype: n.dtype,
                }
            })
            .collect();
        let t = infer(&op, &types)?;
        Ok(self.out.push(Node {
            op,
            inputs: inputs.to_vec(),
            shape: t.shape,
            dtype: t.dtype,
            taskgraph: tg,
            phase: Phase::Forward,
        }))
    }
}
