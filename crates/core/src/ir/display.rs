//! The stable text form of a graph, used by golden tests and error messages:
//! `%4 = matmul{ta=false,tb=false}(%2, %3) : f32[B,1024] tg0 fwd`.

use super::graph::{Graph, NodeId};
use super::op::attrs;
use std::fmt;

impl Graph {
    pub fn node_line(&self, id: NodeId) -> String {
        let n = self.node(id);
        let args: Vec<String> = n.inputs.iter().map(|i| i.to_string()).collect();
        format!(
            "{id} = {}{}({}) : {}{} tg{} {}",
            n.op.name(),
            attrs(&n.op),
            args.join(", "),
            n.dtype,
            n.shape,
            n.taskgraph.0,
            n.phase.name()
        )
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tg) in self.taskgraphs.iter().enumerate() {
            writeln!(
                f,
                "taskgraph tg{i} {} {:?} x{}",
                tg.name, tg.strategy, tg.device_count
            )?;
        }
        for id in self.ids() {
            writeln!(f, "{}", self.node_line(id))?;
        }
        for (name, id) in &self.outputs {
            writeln!(f, "output {name} = {id}")?;
        }
        if let Some(l) = self.loss {
            writeln!(f, "loss = {l}")?;
        }
        if !self.checkpoints.is_empty() {
            let ids: Vec<String> = self.checkpoints.iter().map(|c| c.to_string()).collect();
            writeln!(f, "checkpoints {}", ids.join(" "))?;
        }
        for (p, g) in &self.grads {
            writeln!(f, "grad {p} = {g}")?;
        }
        Ok(())
    }
}
