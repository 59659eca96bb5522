//! `compile()` and `NativeTrainer`: a compiled training program. Compilation, steps, evaluation
//! and checkpoint I/O run as napi `AsyncTask`s on the libuv pool; batch tensors are copied into
//! owned `Vec`s on the JS thread before a task leaves it.

use crate::convert::{
    JsInputSpec, JsStepReport, JsTensor, JsTensorView, ParameterInfo, copy_into, dims_u32,
    host_data, host_view, input_spec, parse_json, step_report, to_js_tensor,
};
use crate::error::{self as js, catch, guard, reject};
use crate::model::NativeModel;
use napi::Task;
use napi::bindgen_prelude::{AsyncTask, Env};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use weft_core::checkpoint::steps;
use weft_core::exec::{HostData, HostView};
use weft_core::ir::Graph;
use weft_core::session::{DeviceSpec, StepReport, Trainer, TrainerOptions};
use weft_core::{Error, Result};

/// A compiled trainer, on CPU virtual devices or (native builds) CUDA ones.
pub enum AnyTrainer {
    Cpu(Trainer),
    #[cfg(not(target_family = "wasm"))]
    Cuda(Trainer<weft_cuda::CudaBackend>),
}

/// `$body` with `$t` bound to the trainer whichever backend it runs on.
macro_rules! on {
    ($trainer:expr, |$t:ident| $body:expr) => {
        match $trainer {
            AnyTrainer::Cpu($t) => $body,
            #[cfg(not(target_family = "wasm"))]
            AnyTrainer::Cuda($t) => $body,
        }
    };
}

type Shared = Arc<Mutex<AnyTrainer>>;
type Staging = Arc<Mutex<BTreeMap<String, HostData>>>;

fn poisoned() -> Error {
    Error::internal("the trainer is unusable after an earlier internal error")
}

fn lock(t: &Shared) -> Result<MutexGuard<'_, AnyTrainer>> {
    t.lock().map_err(|_| poisoned())
}

/// Sync accessors must not block the JS thread behind a running task.
fn try_lock(t: &Shared) -> Result<MutexGuard<'_, AnyTrainer>> {
    t.try_lock().map_err(|e| match e {
        TryLockError::WouldBlock => Error::Unsupported {
            feature: "concurrent trainer calls".into(),
            message:
                "the trainer is busy with a step or checkpoint; await it before reading from it"
                    .into(),
        },
        TryLockError::Poisoned(_) => poisoned(),
    })
}

/// Batch tensors (one per input, in `names` order) copied into `staging`'s buffers. Reusing
/// them across steps matters: a fresh multi-megabyte `Vec` per step is a fresh `mmap`, and its
/// page faults cost more than the copy.
fn batch_map(
    names: &[String],
    inputs: &[JsTensor],
    mut staging: BTreeMap<String, HostData>,
) -> Result<BTreeMap<String, HostData>> {
    check_count(names, inputs.len())?;
    // An evaluation may leave inputs out: no buffer of an earlier step may stand in for them.
    staging.retain(|k, _| names.contains(k));
    for (name, v) in names.iter().zip(inputs) {
        match staging.get_mut(name) {
            Some(buf) => copy_into(buf, v),
            None => {
                staging.insert(name.clone(), host_data(v));
            }
        }
    }
    Ok(staging)
}

fn check_count(names: &[String], got: usize) -> Result<()> {
    if got == names.len() {
        return Ok(());
    }
    Err(Error::batch(format!(
        "{got} batch tensors for the model's {} inputs {names:?}",
        names.len()
    )))
}

/// Finish `model` with `lossId` as the loss and compile it with `optionsJson`
/// (`{batch, seed, threads, devices: "cpu:N", optimizer: {...}, config: {...}}`).
#[napi(ts_return_type = "Promise<NativeTrainer>")]
pub fn compile(
    model: &mut NativeModel,
    loss_id: u32,
    options_json: String,
) -> js::Result<AsyncTask<CompileTask>> {
    guard(|| {
        let options = TrainerOptions::from_json(&parse_json("compile options", &options_json)?)?;
        let graph = model.finish(loss_id)?;
        Ok(AsyncTask::new(CompileTask {
            job: Some((graph, options)),
        }))
    })
}

pub struct CompileTask {
    job: Option<(Graph, TrainerOptions)>,
}

/// `cuda:N` first checks the GPUs and CUDA libraries, so a machine without them gets an error
/// naming what is missing.
#[cfg(not(target_family = "wasm"))]
fn compile_cuda(graph: Graph, options: TrainerOptions) -> Result<AnyTrainer> {
    weft_cuda::compile(graph, options).map(AnyTrainer::Cuda)
}

/// The WASM build leaves weft-cuda out (it loads CUDA's libraries with dlopen, which WASI lacks).
#[cfg(target_family = "wasm")]
fn compile_cuda(_: Graph, options: TrainerOptions) -> Result<AnyTrainer> {
    let n = match options.devices {
        DeviceSpec::Cuda(n) | DeviceSpec::Cpu(n) => n,
    };
    Err(Error::Device {
        message: format!(
            "devices cuda:{n} needs CUDA, which the WASM build does not have: use the native addon, or cpu devices"
        ),
    })
}

#[napi]
impl Task for CompileTask {
    type Output = Result<AnyTrainer>;
    type JsValue = NativeTrainer;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(catch(|| {
            let (graph, options) = self
                .job
                .take()
                .ok_or_else(|| Error::internal("compile ran twice"))?;
            match options.devices {
                DeviceSpec::Cuda(_) => compile_cuda(graph, options),
                DeviceSpec::Cpu(_) => Trainer::compile(graph, options).map(AnyTrainer::Cpu),
            }
        }))
    }

    fn resolve(&mut self, env: Env, out: Self::Output) -> napi::Result<NativeTrainer> {
        catch(|| {
            out.map(|t| NativeTrainer {
                input_names: on!(&t, |t| t.inputs().iter().map(|s| s.name.clone()).collect()),
                inner: Arc::new(Mutex::new(t)),
                staging: Staging::default(),
            })
        })
        .map_err(|e| reject(&env, e))
    }
}

/// A step or an evaluation on one global batch.
pub struct StepTask {
    trainer: Shared,
    batch: BTreeMap<String, HostData>,
    /// Where `batch`'s buffers go back to when the task resolves, for the next step to reuse.
    staging: Staging,
    train: bool,
}

#[napi]
impl Task for StepTask {
    type Output = Result<StepReport>;
    type JsValue = JsStepReport;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(catch(|| {
            let mut t = lock(&self.trainer)?;
            on!(&mut *t, |t| if self.train {
                t.step(&self.batch)
            } else {
                t.evaluate(&self.batch)
            })
        }))
    }

    fn resolve(&mut self, env: Env, out: Self::Output) -> napi::Result<JsStepReport> {
        if let Ok(mut slot) = self.staging.lock() {
            *slot = std::mem::take(&mut self.batch);
        }
        catch(|| out.map(step_report)).map_err(|e| reject(&env, e))
    }
}

/// Checkpoint I/O.
pub enum Io {
    /// Root, meta, saves to keep.
    Save(PathBuf, Value, usize),
    Load(PathBuf),
    LoadWeights(PathBuf),
}

pub struct IoTask {
    trainer: Shared,
    job: Option<Io>,
}

#[napi]
impl Task for IoTask {
    /// JSON text: the new step directory for `save`, the stored meta for `load`, the skipped
    /// tensor names for `loadWeights`.
    type Output = Result<String>;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(catch(|| {
            let job = self
                .job
                .take()
                .ok_or_else(|| Error::internal("task ran twice"))?;
            let mut t = lock(&self.trainer)?;
            Ok(on!(&mut *t, |t| match job {
                Io::Save(root, meta, keep) => {
                    Value::from(t.save_keeping(&root, meta, keep)?.display().to_string())
                }
                Io::Load(dir) => t.load(&dir)?,
                Io::LoadWeights(file) => Value::from(t.load_weights(&file)?),
            })
            .to_string())
        }))
    }

    fn resolve(&mut self, env: Env, out: Self::Output) -> napi::Result<String> {
        out.map_err(|e| reject(&env, e))
    }
}

#[napi]
pub struct NativeTrainer {
    inner: Shared,
    /// Batch buffers of the last step (empty while a step holds them).
    staging: Staging,
    /// The model's inputs in order: batches arrive as one tensor per input in this order.
    input_names: Vec<String>,
}

impl NativeTrainer {
    fn step_task(
        &self,
        names: &[String],
        inputs: &[JsTensor],
        train: bool,
    ) -> Result<AsyncTask<StepTask>> {
        // A step still holding the buffers (calls not awaited) leaves an empty map: fresh ones.
        let reuse = self
            .staging
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        Ok(AsyncTask::new(StepTask {
            trainer: self.inner.clone(),
            batch: batch_map(names, inputs, reuse)?,
            staging: self.staging.clone(),
            train,
        }))
    }

    fn io_task(&self, job: Io) -> AsyncTask<IoTask> {
        AsyncTask::new(IoTask {
            trainer: self.inner.clone(),
            job: Some(job),
        })
    }
}

#[napi]
impl NativeTrainer {
    /// One optimizer step on a global batch: one tensor per input, in `inputs()` order.
    #[napi(ts_args_type = "inputs: Array<Float32Array | Int32Array>")]
    pub fn step(&self, inputs: Vec<JsTensor>) -> js::Result<AsyncTask<StepTask>> {
        guard(|| self.step_task(&self.input_names, &inputs, true))
    }

    /// One optimizer step on the calling (JS) thread: the batch's typed arrays (one per input,
    /// in `inputs()` order) are read in place, nothing copied or queued, and the event loop
    /// waits for the step, as a PyTorch step does. For loops that need no event loop meanwhile.
    #[napi(ts_args_type = "inputs: Array<Float32Array | Int32Array>")]
    pub fn step_sync(&self, inputs: Vec<JsTensorView<'_>>) -> js::Result<JsStepReport> {
        guard(|| {
            check_count(&self.input_names, inputs.len())?;
            let batch: BTreeMap<String, HostView<'_>> = self
                .input_names
                .iter()
                .zip(&inputs)
                .map(|(name, v)| (name.clone(), host_view(v)))
                .collect();
            let mut t = try_lock(&self.inner)?;
            Ok(step_report(on!(&mut *t, |t| t.step(&batch))?))
        })
    }

    /// Loss and outputs on a batch of any multiple or divisor of the compiled rows, without
    /// updating anything; a `null` input is left out (`Trainer::evaluate`: labels no output reads).
    #[napi(ts_args_type = "inputs: Array<Float32Array | Int32Array | null>")]
    pub fn evaluate(&self, inputs: Vec<Option<JsTensor>>) -> js::Result<AsyncTask<StepTask>> {
        guard(|| {
            check_count(&self.input_names, inputs.len())?;
            let (names, given): (Vec<String>, Vec<JsTensor>) = self
                .input_names
                .iter()
                .zip(inputs)
                .filter_map(|(n, t)| Some((n.clone(), t?)))
                .unzip();
            self.step_task(&names, &given, false)
        })
    }

    /// Write a checkpoint (parameters, optimizer state, step, and `metaJson`) as a new step
    /// directory under `dir`, keeping the newest `keep` (default 1); resolves to its path as
    /// JSON text.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn save(
        &self,
        dir: String,
        meta_json: Option<String>,
        keep: Option<u32>,
    ) -> js::Result<AsyncTask<IoTask>> {
        guard(|| {
            let meta = match meta_json {
                Some(m) => parse_json("checkpoint meta", &m)?,
                None => Value::Null,
            };
            let keep = keep.map_or(steps::DEFAULT_KEEP, |k| k as usize);
            Ok(self.io_task(Io::Save(dir.into(), meta, keep)))
        })
    }

    /// Restore a checkpoint directory written by `save`; resolves to its meta as JSON text.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn load(&self, dir: String) -> js::Result<AsyncTask<IoTask>> {
        guard(|| Ok(self.io_task(Io::Load(dir.into()))))
    }

    /// Initialise parameters from a safetensors file or a Hugging Face `save_pretrained`
    /// directory; resolves to the JSON array of tensors set aside (GPT-2's attention-mask
    /// buffers, a tied `lm_head.weight`).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn load_weights(&self, file: String) -> js::Result<AsyncTask<IoTask>> {
        guard(|| Ok(self.io_task(Io::LoadWeights(file.into()))))
    }

    /// The batch inputs at the global batch size, in model order.
    #[napi]
    pub fn inputs(&self) -> js::Result<Vec<JsInputSpec>> {
        guard(|| {
            let t = try_lock(&self.inner)?;
            Ok(on!(&*t, |t| t.inputs().iter().map(input_spec).collect()))
        })
    }

    /// Optimizer steps taken so far (restored by `load`).
    #[napi]
    pub fn step_count(&self) -> js::Result<i64> {
        guard(|| Ok(on!(&*try_lock(&self.inner)?, |t| t.step_count() as i64)))
    }

    #[napi]
    pub fn plan_text(&self) -> js::Result<String> {
        guard(|| Ok(on!(&*try_lock(&self.inner)?, |t| t.plan_text())))
    }

    /// The plan as JSON text (devices, taskgraphs, schedule, memory, config).
    #[napi]
    pub fn plan_json(&self) -> js::Result<String> {
        guard(|| Ok(on!(&*try_lock(&self.inner)?, |t| t.plan_json().to_string())))
    }

    /// This process's place in a multi-process job as JSON text
    /// (`{rank, world, localRank, localWorld, launcher}`), or `null` in a single process.
    #[napi]
    pub fn process_json(&self) -> js::Result<String> {
        guard(|| {
            let t = try_lock(&self.inner)?;
            let v = on!(&*t, |t| t.process_rank()).map(|p| {
                serde_json::json!({
                    "rank": p.rank,
                    "world": p.world,
                    "localRank": p.local_rank,
                    "localWorld": p.local_world,
                    "launcher": p.launcher.name(),
                })
            });
            Ok(v.unwrap_or(Value::Null).to_string())
        })
    }

    /// Measured and predicted memory per device as JSON text.
    #[napi]
    pub fn memory_json(&self) -> js::Result<String> {
        guard(|| {
            Ok(on!(&*try_lock(&self.inner)?, |t| t
                .memory_json()
                .to_string()))
        })
    }

    #[napi]
    pub fn parameter_names(&self) -> js::Result<Vec<String>> {
        guard(|| Ok(on!(&*try_lock(&self.inner)?, |t| t.parameter_names())))
    }

    #[napi]
    pub fn parameters(&self) -> js::Result<Vec<ParameterInfo>> {
        guard(|| {
            let t = try_lock(&self.inner)?;
            Ok(on!(&*t, |t| t.parameter_shapes())
                .into_iter()
                .map(|(name, dims)| ParameterInfo {
                    name,
                    shape: dims_u32(&dims),
                })
                .collect())
        })
    }

    /// A copy of a parameter's current value.
    #[napi(ts_return_type = "Float32Array | Int32Array")]
    pub fn get_parameter(&self, name: String) -> js::Result<JsTensor> {
        guard(|| {
            Ok(to_js_tensor(
                on!(&*try_lock(&self.inner)?, |t| t.parameter(&name))?
            ))
        })
    }

    /// A key/value-cached decoder with the current weights, or one whose `reason` says why
    /// the model has none.
    #[napi]
    pub fn kv_decoder(&self) -> js::Result<crate::generate::NativeDecoder> {
        guard(|| {
            let t = try_lock(&self.inner)?;
            Ok(crate::generate::NativeDecoder::new(
                on!(&*t, |t| t.kv_decoder())?
            ))
        })
    }

    /// Chrome/Perfetto trace of the last training step as JSON text: one track per device.
    #[napi]
    pub fn trace_json(&self) -> js::Result<String> {
        guard(|| {
            Ok(on!(&*try_lock(&self.inner)?, |t| t
                .trace_json()
                .to_string()))
        })
    }
}
