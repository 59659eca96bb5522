//! The cost model EPL lacks: forward FLOPs per op, backward taken as twice the forward (the usual
//! estimate: one product for the input gradient, one for the weight gradient), memory traffic,
//! activation bytes (each forward op's output, which the backward keeps) and parameter bytes.
//! Stages are balanced by a roofline time estimate from FLOPs and traffic: balanced by FLOPs
//! alone, W2's two stages differed by 20% in measured time (memory-bound ops are
//! undercounted), which a 1F1B pipeline pays as idle time.
//!
//! Costs are evaluated at batch 1 (`Dim::Batch(k)` counts as k): every op's FLOPs and output
//! size are linear in the batch (ops on parameters alone are negligible), so the ratios between
//! stages, which are all the partition needs, do not depend on it. Figures are therefore
//! "per sample". FLOPs are integers, so sums are exact and equal blocks tie exactly.

use crate::ir::{Graph, NodeId, Op, Shape};
use std::collections::BTreeSet;
use std::fmt;

/// What a stage is predicted to cost per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct StageCost {
    /// Forward compute ops in the stage (leaves not counted).
    pub ops: usize,
    /// Training FLOPs per sample: forward + backward (3x forward).
    pub flops: f64,
    /// Estimated training time per sample on one thread (the roofline of `UnitCost::time_ps`):
    /// what the partition balances.
    pub time_ms: f64,
    /// Bytes of the forward outputs the stage keeps for its backward, per sample.
    pub activation_bytes: usize,
    /// Bytes of the parameters the stage reads (a tied parameter counts in every stage using it).
    pub param_bytes: usize,
    /// First and last compute node; None for an empty stage (only `equal_op_count_stages` with
    /// fewer ops than stages makes one).
    pub first_node: Option<NodeId>,
    pub last_node: Option<NodeId>,
}

impl fmt::Display for StageCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = match (self.first_node, self.last_node) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "empty".to_string(),
        };
        write!(
            f,
            "{} ops {span}, {} and est. {:.2} ms per sample (fwd+bwd), activations {}, parameters {}",
            self.ops,
            si(self.flops, "FLOP"),
            self.time_ms,
            bytes(self.activation_bytes as f64),
            bytes(self.param_bytes as f64)
        )
    }
}

fn si(x: f64, unit: &str) -> String {
    let prefixes = [
        ("", 1.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (p, scale) = prefixes
        .iter()
        .rev()
        .find(|(_, s)| x >= *s)
        .unwrap_or(&prefixes[0]);
    format!("{:.2} {p}{unit}", x / scale)
}

fn bytes(x: f64) -> String {
    let units = [
        ("B", 1.0),
        ("KiB", 1024.0),
        ("MiB", 1048576.0),
        ("GiB", 1073741824.0),
    ];
    let (u, scale) = units
        .iter()
        .rev()
        .find(|(_, s)| x >= *s)
        .unwrap_or(&units[0]);
    format!("{:.1} {u}", x / scale)
}

/// One compute op's cost at batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnitCost {
    pub forward_flops: u64,
    pub activation_bytes: u64,
    /// Bytes the forward op reads and writes (inputs and output).
    pub traffic_bytes: u64,
}

/// Sustained single-thread rates of the roofline time estimate. Only their ratio matters to a
/// partition (what is balanced is time, in any unit): 20 FLOP per byte, measured on the CPU
/// backend, where a GEMM runs near peak while layer norms, softmaxes, GELUs and embedding
/// gathers are bound by memory and cost far more per FLOP than a FLOP count says.
const FLOPS_PER_S: f64 = 200e9;
const BYTES_PER_S: f64 = 10e9;

impl UnitCost {
    /// Training FLOPs (forward + backward).
    pub fn training_flops(self) -> u64 {
        3 * self.forward_flops
    }

    /// Estimated training time (forward + backward, the backward taken as twice the forward
    /// in time as in FLOPs) in picoseconds: each op runs at whichever of arithmetic and memory
    /// traffic binds it (a roofline).
    pub fn time_ps(self) -> u64 {
        let compute = self.forward_flops as f64 / FLOPS_PER_S;
        let memory = self.traffic_bytes as f64 / BYTES_PER_S;
        (3.0 * compute.max(memory) * 1e12).round() as u64
    }

    /// What the partition minimises: estimated time first, activation memory to break ties.
    pub fn key(self) -> (u64, u64) {
        (self.time_ps(), self.activation_bytes)
    }
}

/// Costs of the given compute nodes.
pub(super) fn unit_costs(graph: &Graph, units: &[NodeId]) -> Vec<UnitCost> {
    units
        .iter()
        .map(|&id| {
            let n = graph.node(id);
            let bytes = |x: NodeId| {
                let m = graph.node(x);
                numel1(&m.shape) * m.dtype.size_bytes() as u64
            };
            let output = bytes(id);
            // A view moves nothing.
            let traffic = match n.op {
                Op::Reshape { .. } => 0,
                _ => output + n.inputs.iter().map(|&x| bytes(x)).sum::<u64>(),
            };
            UnitCost {
                forward_flops: forward_flops(graph, id),
                activation_bytes: output,
                traffic_bytes: traffic,
            }
        })
        .collect()
}

/// Element count with the symbolic batch at 1.
fn numel1(shape: &Shape) -> u64 {
    shape
        .resolve(1)
        .to_vec()
        .iter()
        .map(|&d| d as u64)
        .product()
}

fn dims1(shape: &Shape) -> Vec<u64> {
    shape
        .resolve(1)
        .to_vec()
        .iter()
        .map(|&d| d as u64)
        .collect()
}

/// Forward FLOPs of one op (multiply-add = 2). Fused ops are counted as their unfused math.
fn forward_flops(graph: &Graph, id: NodeId) -> u64 {
    let n = graph.node(id);
    let out = numel1(&n.shape);
    let input = |i: usize| &graph.node(n.inputs[i]).shape;
    match &n.op {
        op if op.is_leaf() => 0,
        // [.., M, K] x [K, N]: 2*K per output element.
        Op::MatMul { trans_a, .. } => {
            let a = dims1(input(0));
            let k = if *trans_a {
                a[a.len() - 2]
            } else {
                a[a.len() - 1]
            };
            2 * out * k
        }
        // q.k^T and p.v, each 2*T*T*D per head: 4*B*H*T*T*D = 4*B*T*T*C. The causal mask
        // halves the useful work, but kernels rarely exploit it fully; keep the full count.
        Op::CausalAttention { .. } => {
            let q = dims1(input(0));
            4 * q[0] * q[1] * q[1] * (q[2] / 3)
        }
        // mean, centre, square, variance, scale+shift: about 5 passes per element.
        Op::LayerNorm { .. } | Op::Softmax => 5 * out,
        // log-sum-exp (max, exp, sum) over each row of logits.
        Op::CrossEntropy => 3 * numel1(input(0)),
        Op::Reduce { .. } => numel1(input(0)),
        // A view: no arithmetic and no copy.
        Op::Reshape { .. } => 0,
        // Elementwise ops, embedding gathers and layout copies: one per output element.
        _ => out,
    }
}

/// Per-stage cost of an assignment (`stage_of[node]`, as `auto_stages` or
/// `equal_op_count_stages` give it) over `num_stages` stages.
pub fn stage_costs(graph: &Graph, stage_of: &[usize], num_stages: usize) -> Vec<StageCost> {
    let mut stages: Vec<StageCost> = (0..num_stages)
        .map(|_| StageCost {
            ops: 0,
            flops: 0.0,
            time_ms: 0.0,
            activation_bytes: 0,
            param_bytes: 0,
            first_node: None,
            last_node: None,
        })
        .collect();
    let mut params: Vec<BTreeSet<NodeId>> = vec![BTreeSet::new(); num_stages];
    for id in graph.ids().filter(|&id| !graph.node(id).op.is_leaf()) {
        let s = stage_of[id.index()];
        let c = unit_costs(graph, &[id])[0];
        let st = &mut stages[s];
        st.ops += 1;
        st.flops += c.training_flops() as f64;
        st.time_ms += c.time_ps() as f64 * 1e-9;
        st.activation_bytes += c.activation_bytes as usize;
        st.first_node.get_or_insert(id);
        st.last_node = Some(id);
        for &x in &graph.node(id).inputs {
            if matches!(graph.node(x).op, Op::Parameter { .. }) {
                params[s].insert(x);
            }
        }
    }
    for (st, ps) in stages.iter_mut().zip(&params) {
        st.param_bytes = ps
            .iter()
            .map(|&p| numel1(&graph.node(p).shape) as usize * 4)
            .sum();
    }
    stages
}
