//! `verify()`: the invariants every pass must leave true. A failure names the node and shows
//! the graph's text around it.

use super::graph::{Graph, NodeId};
use super::infer::{TensorType, infer};
use crate::error::{Error, Result};

impl Graph {
    pub fn verify(&self) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            let fail = |m: String| self.verify_error(id, &m);
            for inp in &node.inputs {
                if inp.index() >= i {
                    return Err(fail(format!("input {inp} is not defined before {id}")));
                }
            }
            if node.taskgraph.0 as usize >= self.taskgraphs.len() {
                return Err(fail(format!("unknown taskgraph {}", node.taskgraph.0)));
            }
            let types: Vec<TensorType> = node
                .inputs
                .iter()
                .map(|x| {
                    let n = self.node(*x);
                    TensorType {
                        shape: n.shape.clone(),
                        dtype: n.dtype,
                    }
                })
                .collect();
            let t = infer(&node.op, &types).map_err(|e| fail(e.to_string()))?;
            if t.shape != node.shape || t.dtype != node.dtype {
                return Err(fail(format!(
                    "recorded type {}{} but inference gives {}{}",
                    node.dtype, node.shape, t.dtype, t.shape
                )));
            }
        }
        self.verify_roots()
    }

    fn verify_roots(&self) -> Result<()> {
        let n = self.nodes.len();
        let ok = |id: NodeId| id.index() < n;
        if let Some(l) = self.loss
            && (!ok(l) || self.node(l).shape.rank() != 0)
        {
            return Err(Error::Verify {
                message: format!("loss {l} is not a scalar node"),
            });
        }
        for (name, id) in &self.outputs {
            if !ok(*id) {
                return Err(Error::Verify {
                    message: format!("output '{name}' -> missing {id}"),
                });
            }
        }
        for c in &self.checkpoints {
            if !ok(*c) || self.node(*c).op.is_leaf() {
                return Err(Error::Verify {
                    message: format!("checkpoint {c} is not a computed value"),
                });
            }
        }
        for (p, g) in &self.grads {
            if !ok(*p) || !ok(*g) || self.node(*p).shape != self.node(*g).shape {
                return Err(Error::Verify {
                    message: format!("gradient {g} does not match parameter {p}"),
                });
            }
        }
        Ok(())
    }

    fn verify_error(&self, id: NodeId, message: &str) -> Error {
        let lo = id.index().saturating_sub(3);
        let hi = (id.index() + 2).min(self.nodes.len());
        let context: Vec<String> = (lo..hi).map(|i| self.node_line(NodeId(i as u32))).collect();
        Error::Verify {
            message: format!("{id}: {message}\n{}", context.join("\n")),
        }
    }
}
