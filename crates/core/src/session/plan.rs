//! The plan of a compiled trainer as text and JSON (`weft plan`, `trainer.plan`), and the
//! memory prediction made by simulating the device program's liveness.

use super::trainer::Trainer;
use crate::exec::{Action, ProgramKind};
use crate::ir::{Graph, Strategy};
use serde_json::{Value, json};
use std::fmt::Write;

/// Predicted peak bytes per category for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEstimate {
    pub params: usize,
    pub grads: usize,
    pub optimizer_state: usize,
    pub activations: usize,
}

impl MemoryEstimate {
    pub fn total(&self) -> usize {
        self.params + self.grads + self.optimizer_state + self.activations
    }

    pub fn to_json(&self) -> Value {
        json!({
            "params": self.params, "grads": self.grads, "optimizer_state": self.optimizer_state,
            "activations": self.activations, "total": self.total(),
        })
    }
}

/// Walk the train program: live transient bytes at each action, peak of those is the
/// activation estimate (gradients are counted once they are accumulated).
fn predict(graph: &Graph, actions: &[Action], state_per_param: usize) -> MemoryEstimate {
    let bytes = |id: crate::ir::NodeId| {
        let n = graph.node(id);
        n.shape.size() * n.dtype.size_bytes()
    };
    let params: usize = graph.parameters().iter().map(|(id, _)| bytes(*id)).sum();
    let grads: usize = graph.grads.iter().map(|(p, _)| bytes(*p)).sum();
    let (mut live, mut peak) = (0usize, 0usize);
    for a in actions {
        match *a {
            Action::Load(id) | Action::Compute(id) => live += bytes(id),
            Action::Free(id) => live = live.saturating_sub(bytes(id)),
            Action::AccumulateGrad { .. } => {}
        }
        peak = peak.max(live);
    }
    MemoryEstimate { params, grads, optimizer_state: grads * state_per_param, activations: peak }
}

fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

impl Trainer {
    pub fn memory_estimate(&self) -> MemoryEstimate {
        let program = self.exec.program(ProgramKind::Train);
        let states = self.options.optimizer.rule(0.0).state_count();
        predict(self.exec.graph(), &program.actions, states)
    }

    /// Per-device schedule: forward/backward of each micro-batch, then the optimizer step.
    fn schedule(&self) -> Vec<String> {
        let mut s: Vec<String> = (0..self.micro_batches).flat_map(|m| [format!("F{m}"), format!("B{m}")]).collect();
        s.push("STEP".into());
        s
    }

    pub fn plan_json(&self) -> Value {
        let taskgraphs: Vec<Value> = self
            .model
            .taskgraphs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let strategy = if t.strategy == Strategy::Split { "split" } else { "replicate" };
                json!({"name": t.name, "index": i, "strategy": strategy, "devices": [[0]]})
            })
            .collect();
        json!({
            "devices": ["cpu:0"],
            "batch": {"global": self.options.batch, "replicas": 1, "micro_batches": self.micro_batches,
                      "per_micro_batch": self.options.batch / self.micro_batches},
            "taskgraphs": taskgraphs,
            "schedule": {"cpu:0": self.schedule()},
            "memory": {"cpu:0": self.memory_estimate().to_json()},
            "parameters": self.param_count(),
            "config": self.options.config.to_json(),
        })
    }

    pub fn plan_text(&self) -> String {
        let mut t = String::new();
        let m = self.micro_batches;
        let _ = writeln!(t, "devices: cpu:0 (1 device)");
        let _ = writeln!(t, "batch: global {} = 1 replica x {m} micro-batch(es) of {}", self.options.batch, self.options.batch / m);
        for (i, tg) in self.model.taskgraphs.iter().enumerate() {
            let _ = writeln!(t, "taskgraph {i} '{}' {:?} devices [[0]]", tg.name, tg.strategy);
        }
        let _ = writeln!(t, "parameters: {}", self.param_count());
        let _ = writeln!(t, "schedule:");
        let _ = writeln!(t, "  cpu:0 | {}", self.schedule().join(" "));
        let e = self.memory_estimate();
        let _ = writeln!(
            t,
            "memory cpu:0: params {}, grads {}, optimizer {}, activations {}, total {}",
            human(e.params), human(e.grads), human(e.optimizer_state), human(e.activations), human(e.total())
        );
        let program = self.exec.program(ProgramKind::Train);
        let computes = program.actions.iter().filter(|a| matches!(a, Action::Compute(_))).count();
        let _ = write!(t, "program cpu:0: {} actions ({computes} kernels) per micro-batch", program.actions.len());
        t
    }

    /// Measured peaks from the executor's allocator, next to the prediction.
    pub fn memory_json(&self) -> Value {
        json!({"cpu:0": {"measured": self.exec.memory().to_json(), "predicted": self.memory_estimate().to_json()}})
    }
}
