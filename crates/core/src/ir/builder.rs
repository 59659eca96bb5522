//! `GraphBuilder`: the only way user code adds nodes. Every node is typed on insertion, so a
//! shape mistake is reported where the model is built, naming the op and the shapes.

use super::graph::{Graph, Node, NodeId, Phase, Strategy, TaskGraph, TaskGraphId};
use super::infer::{TensorType, infer};
use super::op::{Init, Op};
use super::shape::{Dim, Shape};
use crate::error::{Error, Result};
use crate::tensor::DType;
use std::collections::HashSet;

pub struct GraphBuilder {
    graph: Graph,
    taskgraph: TaskGraphId,
    names: HashSet<String>,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GraphBuilder {
    /// A builder with one default TaskGraph (replicate, one device).
    pub fn new() -> Self {
        let default = TaskGraph {
            name: "default".into(),
            strategy: Strategy::Replicate,
            device_count: 1,
        };
        let graph = Graph {
            taskgraphs: vec![default],
            ..Graph::default()
        };
        GraphBuilder {
            graph,
            taskgraph: TaskGraphId(0),
            names: HashSet::new(),
        }
    }

    /// Open a new TaskGraph; nodes added afterwards belong to it until another is selected.
    pub fn open_taskgraph(
        &mut self,
        name: &str,
        strategy: Strategy,
        device_count: usize,
    ) -> TaskGraphId {
        let tg = TaskGraph {
            name: name.to_string(),
            strategy,
            device_count,
        };
        self.graph.taskgraphs.push(tg);
        self.taskgraph = TaskGraphId(self.graph.taskgraphs.len() as u32 - 1);
        self.taskgraph
    }

    pub fn set_taskgraph(&mut self, id: TaskGraphId) -> Result<()> {
        if id.0 as usize >= self.graph.taskgraphs.len() {
            return Err(Error::internal(format!("no taskgraph {}", id.0)));
        }
        self.taskgraph = id;
        Ok(())
    }

    pub fn current_taskgraph(&self) -> TaskGraphId {
        self.taskgraph
    }

    fn claim_name(&mut self, kind: &str, name: &str) -> Result<()> {
        if name.is_empty() || !self.names.insert(name.to_string()) {
            return Err(Error::shape(
                kind,
                format!("name '{name}' is empty or already used"),
            ));
        }
        Ok(())
    }

    pub fn input(&mut self, name: &str, shape: Shape, dtype: DType) -> Result<NodeId> {
        self.claim_name("input", name)?;
        self.op(
            Op::Input {
                name: name.into(),
                shape,
                dtype,
            },
            &[],
        )
    }

    pub fn parameter(&mut self, name: &str, shape: Shape, init: Init) -> Result<NodeId> {
        self.claim_name("parameter", name)?;
        self.op(
            Op::Parameter {
                name: name.into(),
                shape,
                init,
            },
            &[],
        )
    }

    /// Add `op` applied to `inputs`, typing it by the op's inference rule.
    pub fn op(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let mut types = Vec::with_capacity(inputs.len());
        for &i in inputs {
            let n = self.node(i).map_err(|_| {
                Error::shape(op.name(), format!("input {i} does not exist in this model"))
            })?;
            types.push(TensorType {
                shape: n.shape.clone(),
                dtype: n.dtype,
            });
        }
        let t = infer(&op, &types)?;
        let node = Node {
            op,
            inputs: inputs.to_vec(),
            shape: t.shape,
            dtype: t.dtype,
            taskgraph: self.taskgraph,
            phase: Phase::Forward,
        };
        Ok(self.graph.push(node))
    }

    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.graph
            .nodes
            .get(id.index())
            .ok_or_else(|| Error::internal(format!("node {id} does not exist")))
    }

    /// Resolve a reshape target where `-1` means "whatever is left" (it absorbs the batch).
    pub fn reshape_dims(&self, x: NodeId, dims: &[i64]) -> Result<Shape> {
        let from = self.node(x)?.shape.clone();
        let bad = |m: String| Error::shape("reshape", format!("{from} -> {dims:?}: {m}"));
        let total = from.numel();
        let mut known = 1usize;
        let mut infer_at = None;
        for (i, &d) in dims.iter().enumerate() {
            match d {
                -1 if infer_at.is_none() => infer_at = Some(i),
                -1 => return Err(bad("only one -1 is allowed".into())),
                d if d > 0 => known *= d as usize,
                _ => return Err(bad(format!("invalid dimension {d}"))),
            }
        }
        let mut out: Vec<Dim> = dims
            .iter()
            .map(|&d| Dim::Fixed(d.max(0) as usize))
            .collect();
        match (infer_at, total.batch_power) {
            (None, 0) => {}
            (None, _) => return Err(bad("use -1 for the dimension holding the batch".into())),
            (Some(i), p) if p <= 1 && known > 0 && total.fixed % known == 0 => {
                let rest = total.fixed / known;
                out[i] = if p == 0 {
                    Dim::Fixed(rest)
                } else {
                    Dim::Batch(rest)
                };
            }
            _ => return Err(bad("element counts do not divide".into())),
        }
        Ok(Shape(out))
    }

    pub fn output(&mut self, name: &str, id: NodeId) -> Result<()> {
        self.node(id)?;
        if self.graph.outputs.iter().any(|(n, _)| n == name) {
            return Err(Error::shape(
                "output",
                format!("output '{name}' is already defined"),
            ));
        }
        self.graph.outputs.push((name.to_string(), id));
        Ok(())
    }

    /// Mark a computed value as a recomputation checkpoint (`gradient_checkpoint.type=
    /// 'collection'`): backward keeps it and recomputes the rest from such marks.
    pub fn checkpoint(&mut self, id: NodeId) -> Result<()> {
        let n = self.node(id)?;
        if n.op.is_leaf() {
            return Err(Error::shape(
                "checkpoint",
                format!(
                    "{id} is a {} (kept anyway); mark a computed tensor instead",
                    n.op.name()
                ),
            ));
        }
        if !self.graph.checkpoints.contains(&id) {
            self.graph.checkpoints.push(id);
        }
        Ok(())
    }

    pub fn text(&self) -> String {
        self.graph.to_string()
    }

    /// Finish the model: `loss` must be an f32 scalar (shape []).
    pub fn finish(mut self, loss: NodeId) -> Result<Graph> {
        let n = self.node(loss)?;
        if n.dtype != DType::F32 || n.shape.rank() != 0 {
            return Err(Error::shape(
                "loss",
                format!("the loss must be an f32 scalar, got {}{}", n.dtype, n.shape),
            ));
        }
        self.graph.loss = Some(loss);
        self.graph.verify()?;
        Ok(self.graph)
    }
}
