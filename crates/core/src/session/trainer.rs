//! `Trainer`: compile a model graph for a device layout and run optimizer steps on it.
//! compile = check config -> resolve the batch -> differentiate -> plan -> executor.

use super::options::{DeviceSpec, TrainerOptions};
use super::report::StepReport;
use crate::autodiff::differentiate;
use crate::error::{Error, Result};
use crate::exec::cpu::CpuBackend;
use crate::exec::{Executor, HostData, KernelCtx, ProgramKind};
use crate::ir::{DType, Dim, Graph, NodeId, Op};
use crate::passes::{resolve_batch, run_pass};
use std::collections::BTreeMap;
use std::time::Instant;

/// One batch input of the compiled model, at the global batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    /// Dims for the whole global batch.
    pub dims: Vec<usize>,
    pub dtype: DType,
    /// Whether axis 0 is the batch (split across micro-batches).
    pub batched: bool,
}

pub struct Trainer {
    pub(super) model: Graph,
    pub(super) exec: Executor<CpuBackend>,
    pub(super) options: TrainerOptions,
    pub(super) inputs: Vec<InputSpec>,
    pub(super) micro_batches: usize,
    pub(super) step: u64,
    pub(super) schedule: crate::optim::LrSchedule,
}

fn input_specs(model: &Graph, batch: usize) -> Result<Vec<InputSpec>> {
    let mut specs = Vec::new();
    for (id, name) in model.inputs() {
        let n = model.node(id);
        let dims = n.shape.dims();
        if dims.iter().skip(1).any(|d| matches!(d, Dim::Batch(_))) {
            return Err(Error::shape("input", format!("input '{name}': only axis 0 may be the batch, got {}", n.shape)));
        }
        let batched = matches!(dims.first(), Some(Dim::Batch(_)));
        specs.push(InputSpec { name: name.to_string(), dims: n.shape.resolve(batch).to_vec(), dtype: n.dtype, batched });
    }
    Ok(specs)
}

impl Trainer {
    pub fn compile(model: Graph, options: TrainerOptions) -> Result<Trainer> {
        options.config.check_supported()?;
        match options.devices {
            DeviceSpec::Cpu(1) => {}
            DeviceSpec::Cpu(n) => {
                return Err(Error::unsupported(
                    format!("devices cpu:{n}"),
                    "parallel training on several devices lands with the parallel-training issue; use cpu:1",
                ));
            }
            DeviceSpec::Cuda(_) => {
                return Err(Error::Device { message: "no CUDA backend is compiled into this build of weft (weft-cuda is not enabled)".into() });
            }
        }
        if model.taskgraphs.iter().any(|t| t.device_count > 1) {
            return Err(Error::unsupported(
                "strategy scopes with deviceCount > 1",
                "replicate/split across devices land with the parallel-training issue",
            ));
        }
        let m = options.config.pipeline.num_micro_batch.max(1) as usize;
        let (replicas, b) = (1usize, options.batch);
        if b % (replicas * m) != 0 {
            return Err(Error::batch(format!(
                "global batch B={b} does not split into R={replicas} replicas x M={m} micro-batches"
            )));
        }
        let inputs = input_specs(&model, b)?;
        let micro = run_pass(model.clone(), |g| resolve_batch(g, b / (replicas * m)))?;
        let graph = run_pass(micro, differentiate)?;
        let backend = CpuBackend::new(options.threads);
        let schedule = options.optimizer.lr_schedule()?;
        let exec = Executor::new(backend, graph, options.seed)?;
        Ok(Trainer { model, exec, options, inputs, micro_batches: m, step: 0, schedule })
    }

    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub fn options(&self) -> &TrainerOptions {
        &self.options
    }

    /// Check names, dtypes and sizes of a global batch before anything runs.
    fn check_batch(&self, batch: &BTreeMap<String, HostData>) -> Result<()> {
        for name in batch.keys() {
            if !self.inputs.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::batch(format!("unknown input '{name}'; the model's inputs are {known:?}")));
            }
        }
        for s in &self.inputs {
            let data = batch.get(&s.name).ok_or_else(|| Error::batch(format!("missing input '{}'", s.name)))?;
            let len: usize = s.dims.iter().product();
            if data.dtype() != s.dtype {
                return Err(Error::DType { what: format!("input '{}'", s.name), expected: s.dtype.to_string(), got: data.dtype().to_string() });
            }
            if data.len() != len {
                return Err(Error::batch(format!(
                    "input '{}' must have shape {:?} ({len} elements) for global batch {}, got {} elements",
                    s.name, s.dims, self.options.batch, data.len()
                )));
            }
        }
        Ok(())
    }

    /// The m-th contiguous chunk of every batched input (DESIGN.md, batch semantics).
    fn micro_inputs(&self, batch: &BTreeMap<String, HostData>, m: usize) -> BTreeMap<String, HostData> {
        let mut out = BTreeMap::new();
        for s in &self.inputs {
            let data = &batch[&s.name];
            let chunk = data.len() / if s.batched { self.micro_batches } else { 1 };
            let range = if s.batched { m * chunk..(m + 1) * chunk } else { 0..data.len() };
            let part = match data {
                HostData::F32(v) => HostData::F32(v[range].to_vec()),
                HostData::I32(v) => HostData::I32(v[range].to_vec()),
            };
            out.insert(s.name.clone(), part);
        }
        out
    }

    /// Run every micro-batch through `kind`'s program; returns the mean loss and merged outputs.
    fn run_micro_batches(&mut self, kind: ProgramKind, batch: &BTreeMap<String, HostData>) -> Result<(f32, Vec<(String, Vec<usize>, HostData)>)> {
        self.check_batch(batch)?;
        let ctx = KernelCtx { step: self.step + 1 };
        let loss_id = self.exec.graph().loss.ok_or_else(|| Error::internal("no loss"))?;
        let outputs: Vec<(String, NodeId)> = self.exec.graph().outputs.clone();
        let mut loss_sum = 0.0f64;
        let mut merged: Vec<(String, Vec<usize>, HostData)> = Vec::new();
        for m in 0..self.micro_batches {
            let inputs = self.micro_inputs(batch, m);
            self.exec.run(kind, &inputs, &ctx)?;
            loss_sum += f64::from(self.exec.take_value(loss_id)?.as_f32().map_or(f32::NAN, |v| v[0]));
            for (i, (name, id)) in outputs.iter().enumerate() {
                let data = self.exec.take_value(*id)?;
                let mut dims = self.exec.graph().node(*id).shape.to_vec();
                if m == 0 {
                    merged.push((name.clone(), dims, data));
                } else {
                    let (_, d, acc) = &mut merged[i];
                    d[0] += dims.remove(0);
                    match (acc, data) {
                        (HostData::F32(a), HostData::F32(b)) => a.extend(b),
                        (HostData::I32(a), HostData::I32(b)) => a.extend(b),
                        _ => return Err(Error::internal("output dtype changed between micro-batches")),
                    }
                }
            }
        }
        Ok(((loss_sum / self.micro_batches as f64) as f32, merged))
    }

    /// One optimizer step on a global batch.
    pub fn step(&mut self, batch: &BTreeMap<String, HostData>) -> Result<StepReport> {
        let t0 = Instant::now();
        let (loss, outputs) = self.run_micro_batches(ProgramKind::Train, batch)?;
        let step = self.step + 1;
        if !loss.is_finite() {
            self.exec.discard_grads();
            return Err(Error::NonFinite { step, what: format!("loss ({loss})") });
        }
        if self.micro_batches > 1 && self.options.config.communication.gradients_reduce_method == crate::config::ReduceMethod::Mean {
            self.exec.scale_grads(1.0 / self.micro_batches as f32)?;
        }
        let norm = self.exec.grad_norm()?;
        if !norm.is_finite() {
            self.exec.discard_grads();
            return Err(Error::NonFinite { step, what: format!("gradient norm ({norm})") });
        }
        if let Some(max) = self.options.optimizer.grad_clip {
            let coef = crate::optim::clip_coefficient(norm, max);
            if coef < 1.0 {
                self.exec.scale_grads(coef)?;
            }
        }
        let lr = self.schedule.lr_at(step);
        let opt = self.options.optimizer.clone();
        self.exec.apply(step, &|_| opt.rule(lr))?;
        self.step = step;
        Ok(StepReport { step, loss, lr, grad_norm: Some(norm as f32), ms: t0.elapsed().as_secs_f64() * 1e3, outputs })
    }

    /// Loss and outputs on a batch, without updating anything.
    pub fn evaluate(&mut self, batch: &BTreeMap<String, HostData>) -> Result<StepReport> {
        let t0 = Instant::now();
        let (loss, outputs) = self.run_micro_batches(ProgramKind::Eval, batch)?;
        let lr = self.schedule.lr_at(self.step.max(1));
        Ok(StepReport { step: self.step, loss, lr, grad_norm: None, ms: t0.elapsed().as_secs_f64() * 1e3, outputs })
    }

    pub fn parameter_names(&self) -> Vec<String> {
        self.exec.parameter_shapes().into_iter().map(|(n, _)| n).collect()
    }

    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.exec.parameter_shapes()
    }

    pub fn parameter(&self, name: &str) -> Result<HostData> {
        self.exec.read_parameter(name)
    }

    /// The user's model graph (before batch resolution and autodiff).
    pub fn model(&self) -> &Graph {
        &self.model
    }

    /// The compiled per-device graph (resolved and differentiated).
    pub fn compiled(&self) -> &Graph {
        self.exec.graph()
    }

    pub(super) fn param_count(&self) -> usize {
        self.exec.parameter_shapes().iter().map(|(_, d)| d.iter().product::<usize>()).sum()
    }

    #[allow(dead_code)]
    pub(super) fn is_parameter(&self, id: NodeId) -> bool {
        matches!(self.exec.graph().node(id).op, Op::Parameter { .. })
    }
}
