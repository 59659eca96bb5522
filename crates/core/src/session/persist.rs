//! Checkpoints of a trainer: parameters and optimizer state as safetensors, written atomically
//! (a failed save leaves the previous checkpoint intact), and initial weights from a file.

use super::trainer::Trainer;
use crate::checkpoint::{self, CheckpointData, OptimizerState, TensorEntry, check_against};
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::HostData;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Names of the optimizer state buffers, PyTorch's names.
fn state_names(count: usize) -> &'static [&'static str] {
    match count {
        1 => &["momentum_buffer"],
        2 => &["exp_avg", "exp_avg_sq"],
        _ => &[],
    }
}

impl<B: Backend> Trainer<B> {
    /// Save parameters, optimizer state, the step and `meta` (e.g. the model config) as a new
    /// step directory under `root`, keeping the newest `checkpoint::steps::DEFAULT_KEEP`.
    pub fn save(&self, root: &Path, meta: Value) -> Result<()> {
        self.save_keeping(root, meta, checkpoint::steps::DEFAULT_KEEP)
            .map(|_| ())
    }

    /// `save`, keeping the newest `keep` saves under `root`; returns the new step directory.
    /// The directory is written in full under a temp name and appears by one rename, so a kill
    /// at any instant leaves the previous saves loadable (`checkpoint::steps`).
    pub fn save_keeping(&self, root: &Path, meta: Value, keep: usize) -> Result<PathBuf> {
        checkpoint::steps::save_step(root, self.step, keep, |dir| {
            self.write_checkpoint(dir, meta)
        })
    }

    /// The files of one checkpoint, written into `dir`.
    fn write_checkpoint(&self, dir: &Path, meta: Value) -> Result<()> {
        let mut params = Vec::new();
        let mut state = Vec::new();
        for (name, dims) in self.parameter_shapes() {
            params.push(TensorEntry::new(
                name.clone(),
                dims.clone(),
                self.parameter(&name)?,
            ));
            let bufs = self.optimizer_state(&name)?;
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
            "lr_schedule": self.schedule.to_json(),
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
        )?;
        // A GPT-2 checkpoint is also a Hugging Face one: `from_pretrained(dir)` reads this.
        if let Ok(shape) = crate::generate::gpt2_shape(&self.model) {
            checkpoint::hf::write_config(dir, &shape)?;
        }
        Ok(())
    }

    /// Load a directory written by `save`: parameters, optimizer state and step. Returns the
    /// `meta` value stored with it. Nothing changes unless the whole checkpoint matches.
    /// `dir` may be a root of step directories (its newest complete save loads) or one
    /// checkpoint directory.
    pub fn load(&mut self, dir: &Path) -> Result<Value> {
        let dir = &checkpoint::steps::resolve(dir)?;
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
        self.check_schedule(ck.config.get("lr_schedule"), dir)?;
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

    /// The learning-rate schedule is part of the run: a resumed trainer must follow the one
    /// the checkpoint was trained on (its length too, so the rate never rises again), and one
    /// compiled with another is refused rather than silently bent or overridden. Checkpoints
    /// written before the schedule was stored carry none and are not checked.
    fn check_schedule(&self, saved: Option<&Value>, dir: &Path) -> Result<()> {
        let Some(saved) = saved else {
            return Ok(());
        };
        let err = |message: String| Error::Checkpoint {
            path: dir.display().to_string(),
            message,
        };
        let saved = crate::optim::LrSchedule::from_json(saved)
            .map_err(|why| err(format!("weft.json: config.lr_schedule: {why}")))?;
        if saved == self.schedule {
            return Ok(());
        }
        Err(err(format!(
            "trained with the learning-rate schedule {}, this trainer's is {}; resume with the \
             checkpoint's (its optimizer options and total steps), or start a new run from its \
             weights (loadWeights, --init)",
            saved.describe(),
            self.schedule.describe()
        )))
    }

    /// Initialise parameters from a safetensors file or a Hugging Face `save_pretrained`
    /// directory (its `model.safetensors`), as `checkpoint::hf::adapt` reads GPT-2 files: every
    /// parameter must be present with its shape and no unknown tensor may be there. Returns the
    /// names of the tensors set aside (mask buffers, a tied `lm_head.weight`) so the caller can
    /// report them. 16-bit files widen to f32 as they are read.
    pub fn load_weights(&mut self, path: &Path) -> Result<Vec<String>> {
        let file = checkpoint::hf::weights_path(path);
        let mut st = checkpoint::safetensors::read(&file)?;
        // The weights file of a checkpoint directory must belong to its manifest (a torn save
        // is refused).
        checkpoint::check_weights_of_dir(&st, &file)?;
        let expected = self.parameter_shapes();
        let adapted = checkpoint::hf::adapt(&mut st, &expected, &file)?;
        check_against(&expected, &st, &file)?;
        for t in &st.tensors {
            if !matches!(t.data, HostData::F32(_)) {
                return Err(Error::Checkpoint {
                    path: file.display().to_string(),
                    message: format!(
                        "tensor '{}' is {}; parameters are f32",
                        t.name,
                        t.data.dtype()
                    ),
                });
            }
        }
        for t in &st.tensors {
            self.write_parameter_everywhere(&t.name, &t.data)?;
        }
        Ok(adapted.skipped)
    }

    /// Write a parameter on every device that holds it (its shard under tensor parallelism).
    fn write_parameter_everywhere(&mut self, name: &str, data: &HostData) -> Result<()> {
        self.write_whole(name, std::slice::from_ref(data), false)
    }
}
