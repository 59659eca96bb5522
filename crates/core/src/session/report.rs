//! What a step returns to the caller.

use crate::exec::HostData;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: u64,
    /// Mean loss over the global batch.
    pub loss: f32,
    pub lr: f32,
    /// Global gradient norm before clipping (None for evaluation).
    pub grad_norm: Option<f32>,
    pub ms: f64,
    /// Named outputs merged across micro-batches: (name, dims, data).
    pub outputs: Vec<(String, Vec<usize>, HostData)>,
    /// Measured idle fraction of each device over the pipeline phase (training steps only).
    pub idle: Vec<f64>,
    /// The pipeline's ideal idle fraction (S-1)/(M+S-1).
    pub ideal_idle: f64,
    /// fp16 mixed precision: the loss scale after this step (None when the loss is not scaled).
    pub loss_scale: Option<f32>,
    /// Whether this step was skipped for a non-finite gradient (dynamic loss scaling), and how
    /// many the run has skipped so far.
    pub skipped: bool,
    pub skipped_steps: u64,
}

impl StepReport {
    pub fn to_json(&self) -> Value {
        let outputs: serde_json::Map<String, Value> = self
            .outputs
            .iter()
            .map(|(n, d, data)| {
                let values = match data {
                    HostData::F32(v) => json!(v),
                    HostData::I32(v) => json!(v),
                    half => json!(half.to_f32().unwrap_or_default()),
                };
                (
                    n.clone(),
                    json!({"shape": d, "dtype": data.dtype().name(), "data": values}),
                )
            })
            .collect();
        json!({
            "idle": self.idle,
            "idealIdle": self.ideal_idle,
            "step": self.step,
            "loss": self.loss,
            "lr": self.lr,
            "gradNorm": self.grad_norm,
            "lossScale": self.loss_scale,
            "skipped": self.skipped,
            "skippedSteps": self.skipped_steps,
            "ms": self.ms,
            "outputs": outputs,
        })
    }
}
