//! Checkpoints of a trainer: parameters and optimizer state as safetensors, written atomically
//! (a failed save leaves the previous checkpoint intact), and initial weights from a file.

use super::trainer::Trainer;
use crate::checkpoint::{self, CheckpointData, OptimizerState, TensorEntry, check_against};
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::HostData;
use serde_json::Value;
use std::path::Path;

/// Names of the optimizer state buffers, PyTorch's names.
fn state_names(count: usize) -> &'static [&'static str] {
    match count {
        1 => &["momentum_buffer"],
        2 => &["exp_avg", "exp_avg_sq"],
        _ => &[],
    }
}

/// GPT-2 files from Hugging Face carry the causal-mask buffers `h.N.attn.bias` /
/// `h.N.attn.masked_bias`; they are not parameters (weft's attention op is causal by itself).
fn is_hf_mask_buffer(t: &TensorEntry) -> bool {
    (t.name.ends_with(".attn.bias") || t.name.ends_with(".attn.masked_bias")) && t.shape.len() == 4
}

impl<B: Backend> Trainer<B> {
    /// Save parameters, optimizer state, the step and `meta` (e.g. the model config) to `dir`.
    pub fn save(&self, dir: &Path, meta: Value) -> Result<()> {
        let mut params = Vec::new();
        let mut state = Vec::new();
        for (name, dims) in self.parameter_shapes() {
            params.push(TensorEntry::new(
                name.clone(),
                dims.clone(),
                self.parameter(&name)?,
            ));
            let bufs = self.full_state(&name)?;
            for (s, data) in state_names(bufs.len()).iter().zip(bufs) {
                state.push(TensorEntry::new(format!("{name}.{s}"), dims.clone(), data));
            }
        }
        let config = serde_json::json!({
            "meta": meta,
            "batch": self.options.batch,
            "seed": self.options.seed,
            "config": self.options.config.to_json(),
            "loss_scaler": self.scaler.as_ref().map(|s| s.to_json()),
        });
        let optimizer = Some(OptimizerState {
            name: self.options.optimizer.kind.as_str().to_string(),
            tensors: state,
        });
        checkpoint::save_dir(
            dir,
            &CheckpointData {
                step: self.step,
                config,
                params,
                optimizer,
            },
        )
    }

    /// Load a directory written by `save`: parameters, optimizer state and step. Returns the
    /// `meta` value stored with it. Nothing changes unless the whole checkpoint matches.
    pub fn load(&mut self, dir: &Path) -> Result<Value> {
        let ck = checkpoint::load_dir(dir)?;
        let path = dir.join("model.safetensors");
        let file = checkpoint::SafeTensors {
            tensors: ck.params.clone(),
            metadata: Default::default(),
        };
        check_against(&self.parameter_shapes(), &file, &path)?;
        let mut states: Vec<(String, Vec<HostData>)> = Vec::new();
        if let Some(opt) = &ck.optimizer {
            if opt.name != self.options.optimizer.kind.as_str() {
                return Err(Error::Checkpoint {
                    path: dir.display().to_string(),
                    message: format!(
                        "saved with optimizer '{}', this trainer uses '{}'",
                        opt.name,
                        self.options.optimizer.kind.as_str()
                    ),
                });
            }
            for (name, _) in self.parameter_shapes() {
                let mut bufs = Vec::new();
                for s in ["momentum_buffer", "exp_avg", "exp_avg_sq"] {
                    if let Some(t) = opt.tensors.iter().find(|t| t.name == format!("{name}.{s}")) {
                        bufs.push(t.data.clone());
                    }
                }
                states.push((name, bufs));
            }
        }
        for t in &ck.params {
            self.write_parameter_everywhere(&t.name, &t.data)?;
        }
        for (name, bufs) in states {
            self.write_whole(&name, &bufs, true)?;
        }
        self.step = ck.step;
        // fp16's loss scale continues where it was (a checkpoint without one keeps the start).
        if let (Some(s), Some(saved)) = (self.scaler.as_mut(), ck.config.get("loss_scaler")) {
            s.restore(saved);
        }
        Ok(ck.config.get("meta").cloned().unwrap_or(Value::Null))
    }

    /// Initialise parameters from a safetensors file (e.g. a Hugging Face GPT-2
    /// `model.safetensors`). Every parameter must be present with its shape and no unknown
    /// tensor may be there, except GPT-2's attention-mask buffers, which are returned by name
    /// so the caller can report them. The weights file of a checkpoint directory must belong
    /// to its manifest (a torn save is refused).
    pub fn load_weights(&mut self, file: &Path) -> Result<Vec<String>> {
        let mut st = checkpoint::safetensors::read(file)?;
        checkpoint::check_weights_of_dir(&st, file)?;
        let skipped: Vec<String> = st
            .tensors
            .iter()
            .filter(|t| is_hf_mask_buffer(t))
            .map(|t| t.name.clone())
            .collect();
        st.tensors.retain(|t| !is_hf_mask_buffer(t));
        check_against(&self.parameter_shapes(), &st, file)?;
        for t in &st.tensors {
            let data = match &t.data {
                HostData::F32(_) => t.data.clone(),
                other => {
                    return Err(Error::Checkpoint {
                        path: file.display().to_string(),
                        message: format!(
                            "tensor '{}' is {}; parameters are f32",
                            t.name,
                            other.dtype()
                        ),
                    });
                }
            };
            self.write_parameter_everywhere(&t.name, &data)?;
        }
        Ok(skipped)
    }

    /// Write a parameter on every device that holds it (its shard under tensor parallelism).
    fn write_parameter_everywhere(&mut self, name: &str, data: &HostData) -> Result<()> {
        self.write_whole(name, std::slice::from_ref(data), false)
    }
}
