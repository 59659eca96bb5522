//! Reverse-mode autodiff as a graph-to-graph transform: `differentiate(graph)` appends the
//! backward nodes (phase `Backward`, in their forward op's TaskGraph) and records each
//! parameter's gradient in `graph.grads`. The per-op maths lives in one table, `rules.rs`;
//! `gradcheck` holds the finite-difference cases every backend runs.

mod rules;

use crate::error::{Error, Result};
use crate::ir::{BinaryOp, Graph, Node, NodeId, Op, Phase, TaskGraphId, TensorType, infer};

/// Emits backward nodes into the graph being differentiated.
pub(crate) struct Ad<'g> {
    pub graph: &'g mut Graph,
    taskgraph: TaskGraphId,
}

impl Ad<'_> {
    /// Append `op(inputs)` as a backward node of the current TaskGraph.
    pub fn emit(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let types: Vec<TensorType> = inputs
            .iter()
            .map(|i| {
                let n = self.graph.node(*i);
                TensorType {
                    shape: n.shape.clone(),
                    dtype: n.dtype,
                }
            })
            .collect();
        let t = infer(&op, &types)?;
        Ok(self.graph.push(Node {
            op,
            inputs: inputs.to_vec(),
            shape: t.shape,
            dtype: t.dtype,
            taskgraph: self.taskgraph,
            phase: Phase::Backward,
        }))
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.graph.node(id)
    }
}

/// Which nodes depend on a parameter (only those need gradients).
fn requires_grad(graph: &Graph) -> Vec<bool> {
    let mut req = vec![false; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        req[i] = matches!(n.op, Op::Parameter { .. }) || n.inputs.iter().any(|x| req[x.index()]);
    }
    req
}

/// Differentiate the scalar `graph.loss` with respect to every parameter that reaches it.
pub fn differentiate(mut graph: Graph) -> Result<Graph> {
    let loss = graph
        .loss
        .ok_or_else(|| Error::internal("differentiate: graph has no loss"))?;
    if !graph.grads.is_empty() {
        return Err(Error::internal(
            "differentiate: graph already has gradients",
        ));
    }
    let req = requires_grad(&graph);
    let forward_len = graph.nodes.len();
    let mut grad: Vec<Option<NodeId>> = vec![None; forward_len];
    let tg = graph.node(loss).taskgraph;
    let mut ad = Ad {
        graph: &mut graph,
        taskgraph: tg,
    };
    grad[loss.index()] = Some(ad.emit(
        Op::Fill {
            value: 1.0,
            shape: Default::default(),
        },
        &[],
    )?);

    for i in (0..forward_len).rev() {
        let id = NodeId(i as u32);
        let Some(dy) = grad[i] else { continue };
        if !req[i] || ad.node(id).op.is_leaf() {
            continue;
        }
        ad.taskgraph = ad.node(id).taskgraph;
        let input_grads = rules::vjp(&mut ad, id, dy)?;
        let inputs = ad.node(id).inputs.clone();
        for (x, g) in inputs.into_iter().zip(input_grads) {
            let Some(g) = g else { continue };
            if !req[x.index()] {
                continue;
            }
            // A value's gradient has the value's type (under mixed precision an op computing
            // in f32 from a 16-bit input, or a parameter's bias gradient, may differ).
            let want = ad.node(x).dtype;
            let g = if ad.node(g).dtype != want && want.is_float() {
                ad.emit(Op::Cast { to: want }, &[g])?
            } else {
                g
            };
            grad[x.index()] = Some(match grad[x.index()] {
                None => g,
                Some(prev) => ad.emit(Op::Binary(BinaryOp::Add), &[prev, g])?,
            });
        }
    }
    graph.grads = graph
        .parameters()
        .into_iter()
        .filter_map(|(p, _)| grad[p.index()].map(|g| (p, g)))
        .collect();
    graph.verify()?;
    Ok(graph)
}

// A test harness (finite-difference cases for every backend), not shipped: this crate's tests
// and, through the `test-support` feature, weft-cuda's tests compile it.
#[cfg(any(test, feature = "test-support"))]
pub mod gradcheck;
#[cfg(test)]
mod tests;
