//! Mixed precision (`amp.level='O1'`): a rewrite of the forward graph, before autodiff, that
//! runs each op in the precision its class says and inserts casts just in time. Parameters stay
//! f32 (the master weights; no low-precision copy outlives the step: a parameter's cast is an
//! activation like any other), so gradients and optimizer state are f32 too, and autodiff's
//! cast rule gives backward the same precision as forward.
//!
//! The classes (PyTorch autocast's lists, for weft's ops):
//! - low: matmuls and attention, the ops whose f32 cost is bandwidth and whose sums the
//!   kernels accumulate in f32;
//! - wide: layer norm and cross-entropy read any float type and compute in f32 (their kernels
//!   widen on load and accumulate in f32), so a 16-bit input needs no f32 copy kept for backward;
//!   layer norm's output keeps its input's type, the loss is f32;
//! - f32: everything else numerically touchy: softmax, reductions, embedding lookups;
//! - follow: elementwise and data movement run in the low type when an activation they read is
//!   low (parameters are cast to match, as a linear layer's bias), else in f32. So the residual
//!   stream is low from the first block on, as Megatron-LM keeps it by default
//!   (`fp32_residual_connection` off): that is what halves activation memory; layer norm still
//!   sums it in f32.

use crate::error::Result;
use crate::ir::{DType, Graph, Node, NodeId, Op, Phase, TensorType, infer};
use std::collections::HashMap;

/// The precision class of an op (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Low,
    Wide,
    Full,
    Follow,
}

/// The one table of precision classes.
pub fn precision_of(op: &Op) -> Precision {
    match op {
        Op::MatMul { .. } | Op::CausalAttention { .. } => Precision::Low,
        Op::LayerNorm { .. } | Op::CrossEntropy => Precision::Wide,
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Scale { .. }
        | Op::Dropout { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Expand { .. }
        | Op::SumTo { .. } => Precision::Follow,
        _ => Precision::Full,
    }
}

/// What the rewrite did, op by op (`amp.debug_log`) and in total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AmpReport {
    pub low: usize,
    pub full: usize,
    pub casts: usize,
    /// One line per forward op: `n12 matmul -> bf16`.
    pub decisions: Vec<String>,
}

/// Rewrite a forward graph (not yet differentiated) to compute in `low` where allowed.
pub fn mixed_precision(graph: Graph, low: DType) -> Result<(Graph, AmpReport)> {
    let mut r = Rewrite {
        old: &graph,
        nodes: Vec::with_capacity(graph.nodes.len() * 5 / 4),
        new_id: Vec::with_capacity(graph.nodes.len()),
        casts: HashMap::new(),
        report: AmpReport::default(),
    };
    for id in graph.ids() {
        let n = graph.node(id);
        if n.op.is_leaf() || n.phase != Phase::Forward {
            let inputs = n.inputs.iter().map(|x| r.new_id[x.index()]).collect();
            let new = r.push(Node {
                inputs,
                ..n.clone()
            });
            r.new_id.push(new);
            continue;
        }
        let target = r.target(n, low);
        let inputs = n
            .inputs
            .iter()
            .map(|&x| match target {
                Some(t) => r.cast(r.new_id[x.index()], t, n),
                None => Ok(r.new_id[x.index()]),
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<TensorType> = inputs.iter().map(|&x| r.type_of(x)).collect();
        let out = infer(&n.op, &types)?;
        let new = r.push(Node {
            inputs,
            shape: out.shape,
            dtype: out.dtype,
            ..n.clone()
        });
        let tally = if out.dtype == low {
            &mut r.report.low
        } else {
            &mut r.report.full
        };
        *tally += 1;
        r.report
            .decisions
            .push(format!("{id} {} -> {}", n.op.name(), out.dtype));
        r.new_id.push(new);
    }
    // The loss stays f32: backward's seed and the reported loss are f32.
    let loss = match graph.loss {
        Some(l) => {
            let l = r.new_id[l.index()];
            let consumer = r.nodes[l.index()].clone();
            Some(r.cast(l, DType::F32, &consumer)?)
        }
        None => None,
    };
    let Rewrite {
        nodes,
        new_id,
        report,
        ..
    } = r;
    let rewritten = graph.rewritten(nodes, |id| new_id[id.index()]);
    Ok((Graph { loss, ..rewritten }, report))
}

struct Rewrite<'a> {
    old: &'a Graph,
    nodes: Vec<Node>,
    /// Old id -> id of the same node in the new graph.
    new_id: Vec<NodeId>,
    /// (value, type, TaskGraph) -> its cast, made once per TaskGraph: a value read by several
    /// ops of one stage is cast once, and no stage reads another stage's cast.
    casts: HashMap<(NodeId, DType, u32), NodeId>,
    report: AmpReport,
}

impl Rewrite<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId(self.nodes.len() as u32 - 1)
    }

    fn type_of(&self, id: NodeId) -> TensorType {
        let n = &self.nodes[id.index()];
        TensorType {
            shape: n.shape.clone(),
            dtype: n.dtype,
        }
    }

    /// The type an op's float inputs are cast to: its class, and for `follow` the
    /// activations it reads (None: `wide` reads them as they are).
    fn target(&self, n: &Node, low: DType) -> Option<DType> {
        Some(match precision_of(&n.op) {
            Precision::Low => low,
            Precision::Wide => return None,
            Precision::Full => DType::F32,
            Precision::Follow => {
                let activations: Vec<DType> = n
                    .inputs
                    .iter()
                    .filter(|x| {
                        !matches!(
                            self.old.node(**x).op,
                            Op::Parameter { .. } | Op::Fill { .. }
                        )
                    })
                    .map(|x| self.nodes[self.new_id[x.index()].index()].dtype)
                    .filter(|d| d.is_float())
                    .collect();
                if activations.contains(&low) {
                    low
                } else {
                    DType::F32
                }
            }
        })
    }

    /// `x` as `to` for `consumer` (integers and values already of that type as they are).
    fn cast(&mut self, x: NodeId, to: DType, consumer: &Node) -> Result<NodeId> {
        let n = &self.nodes[x.index()];
        if !n.dtype.is_float() || n.dtype == to {
            return Ok(x);
        }
        let key = (x, to, consumer.taskgraph.0);
        if let Some(&c) = self.casts.get(&key) {
            return Ok(c);
        }
        let op = Op::Cast { to };
        let out = infer(&op, &[self.type_of(x)])?;
        let c = self.push(Node {
            op,
            inputs: vec![x],
            shape: out.shape,
            dtype: out.dtype,
            taskgraph: consumer.taskgraph,
            phase: Phase::Forward,
        });
        self.casts.insert(key, c);
        self.report.casts += 1;
        Ok(c)
    }
}

/// After autodiff: backward casts each parameter again where it reads it instead of keeping
/// forward's cast alive until then, so no low-precision weight copy lives across the step (EPL's
/// memory-efficient AMP). The recompute pass does it, keeping every other forward value.
pub fn recast_parameters(graph: Graph) -> Result<Graph> {
    let is_param_cast = |n: &Node| {
        matches!(n.op, Op::Cast { .. })
            && matches!(graph.node(n.inputs[0]).op, Op::Parameter { .. })
    };
    let keep = graph
        .ids()
        .filter(|&id| {
            let n = graph.node(id);
            n.phase == Phase::Forward && !is_param_cast(n)
        })
        .collect();
    crate::passes::recompute(graph.clone(), &keep, None)
}

/// Seed backward with the step's loss scale instead of 1 (fp16 loss scaling): the seed is the
/// `fill 1` autodiff made the gradient of the loss.
pub fn scale_loss_seed(mut graph: Graph) -> Result<Graph> {
    // Autodiff emits the seed first of all backward nodes.
    let seed = graph
        .ids()
        .find(|&id| graph.node(id).phase == Phase::Backward)
        .filter(|&id| matches!(graph.node(id).op, Op::Fill { value, .. } if value == 1.0));
    let seed = seed.ok_or_else(|| crate::error::Error::internal("no backward seed to scale"))?;
    graph.nodes[seed.index()].op = Op::LossScale;
    Ok(graph)
}
