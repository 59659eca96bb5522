//! `Trainer`: compile a model for a device layout and run optimizer steps on it.
//! compile = check config -> stages and replicas -> resolve the batch -> differentiate -> one
//! executor per device (threads) -> communicators; a step runs every device's pipeline work in
//! parallel, reduces gradients across replicas, clips by the global norm and updates.

use super::amp::LossScaler;
use super::batch::{Batch, views};
use super::compile::{
    auto_partition, compile_per_tp, device_cluster, device_count, input_specs, stage_slicing,
};
use super::device::{Device, DeviceResult, LocalClip, StepPlan};
use super::layout::Layout;
use super::options::TrainerOptions;
use super::processes::Cluster;
use super::report::StepReport;
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::cpu::CpuBackend;
use crate::exec::{AsHostView, GradReduce, HostView, KernelCtx, UpdateRule};
use crate::ir::{DType, Graph};
use crate::passes::{StageMap, assign_stages, resolve_batch, run_pass};
use std::collections::BTreeMap;
use std::time::Instant;

/// How gradients are bucketed and reduced (`scale` is applied after the sum).
pub(super) fn grad_reduce(options: &TrainerOptions, scale: f32) -> GradReduce {
    let comm = &options.config.communication;
    GradReduce {
        bucket_bytes: comm.bucket_size_mb * (1 << 20),
        max_splits: comm.max_splits,
        fp16_scale: comm.fp16.then_some(comm.fp16_scale as f32),
        scale,
    }
}

/// One batch input of the compiled model, at the global batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    /// Dims for the whole global batch.
    pub dims: Vec<usize>,
    pub dtype: DType,
    /// Whether axis 0 is the batch (split across replicas and micro-batches).
    pub batched: bool,
}

pub struct Trainer<B: Backend = CpuBackend> {
    pub(super) model: Graph,
    pub(super) compiled: Graph,
    pub(super) stages: StageMap,
    pub(super) layout: Layout,
    pub(super) devices: Vec<Device<B>>,
    pub(super) options: TrainerOptions,
    pub(super) inputs: Vec<InputSpec>,
    pub(super) step: u64,
    pub(super) schedule: crate::optim::LrSchedule,
    /// The automatic stage partition's predicted costs (with `auto.auto_parallel`).
    pub(super) auto_report: Option<crate::passes::AutoStageReport>,
    /// EPL's device slices of the stages (names and device lists in plans); None when
    /// interleaved stages share devices.
    pub(super) slicing: Option<crate::strategy::Slicing>,
    /// Spans of every device in the last step (for `--trace` and idle fractions).
    pub(super) last_trace: Vec<super::trace::DeviceTrace>,
    /// The other processes of a multi-process job (`options.processes`); None in one process.
    pub(super) cluster: Option<Cluster>,
    /// Mixed precision: what the rewrite did, and fp16's loss scale.
    pub(super) amp_report: Option<crate::passes::AmpReport>,
    pub(super) scaler: Option<LossScaler>,
    /// Configurations that run but likely not as meant (the CLI and TS print them).
    pub(super) warnings: Vec<String>,
    /// Every device on the calling thread, interleaved (`session/cooperative.rs`).
    pub(super) cooperative: bool,
}

impl<B: Backend> Trainer<B> {
    /// Compile `model` on the devices `backend` makes (one backend per virtual device), their
    /// tensors exchanged by the host communicators.
    pub fn compile_with(
        model: Graph,
        options: TrainerOptions,
        backend: &super::compile::BackendFactory<'_, B>,
    ) -> Result<Trainer<B>> {
        let engine = super::engine::Engine {
            backend,
            groups: None,
        };
        Self::compile_on(model, options, &engine)
    }

    /// Compile `model` on an engine: its backends, and its device groups where it has them.
    pub fn compile_on(
        model: Graph,
        options: TrainerOptions,
        engine: &super::engine::Engine<'_, B>,
    ) -> Result<Trainer<B>> {
        options.config.check_supported()?;
        let (model, auto_report) = auto_partition(model, &options)?;
        let local_n = device_count(&options)?;
        let cooperative = super::cooperative::select(&options)?;
        let mut cluster = Cluster::join(&options, local_n)?;
        let n = cluster.as_ref().map_or(local_n, Cluster::world_devices);
        // The rule the scopes enforce when the model is built, for graphs built directly too.
        for tg in &model.taskgraphs {
            crate::strategy::check_device_count(tg.strategy, tg.device_count, &tg.name)?;
        }
        let tp = crate::passes::tp_width(&model)?;
        // Layout `all` (or EPL's colocate_split_and_replicate): one VirtualDevice slot per
        // device and every TaskGraph on each (EPL's `parallel.py` puts every TaskGraph on
        // virtual_devices[0] when there are fewer VirtualDevices than TaskGraphs): one stage.
        let all = crate::strategy::shares_all_devices(&options.config.cluster);
        let colocate = tp > 1 && all;
        let stage_map = |g: &Graph| match all {
            true => Ok(StageMap::single(g)),
            false => assign_stages(g),
        };
        let stage_count = stage_map(&model)?.stages();
        let layout = Layout::new(&options, n, stage_count, tp)?;
        // EPL's slicer knows one stage per device; interleaved and colocated layouts place
        // stages themselves.
        let slicing = if layout.virtual_stages == 1 && !colocate {
            let hosts = device_cluster(&options, n, cluster.as_ref())?;
            Some(stage_slicing(&model, &hosts, &options)?)
        } else {
            None
        };
        if let Some(c) = &mut cluster {
            c.check_layout(&layout, &options)?;
            c.host_ranks(slicing.as_ref(), &layout)?;
        }
        let micro_rows = options.batch / (layout.replicas * layout.micro_batches);
        let inputs = input_specs(&model, options.batch)?;
        super::limits::check_sizes(&model, &inputs)?;
        let resolved = run_pass(model.clone(), |g| resolve_batch(g, micro_rows))?;
        let (per_tp, amp_report, scaler) = compile_per_tp(&resolved, &options, tp, colocate)?;
        let compiled = per_tp[0].clone();
        let stages = stage_map(&compiled)?;
        layout.check_communication(&options, &compiled)?;
        layout.check_zero(&options)?;
        if cooperative {
            super::cooperative::check_features(&options, tp)?;
        }
        let threads = match options.threads {
            0 => (std::thread::available_parallelism().map_or(1, |p| p.get()) / n).max(1),
            t => t,
        };
        let (mut comms, hosted_ranks): (_, Vec<usize>) = match &cluster {
            Some(c) => (
                c.communicators(&layout, &options)?,
                c.local_ranks().to_vec(),
            ),
            None => (layout.communicators(&options)?, (0..n).collect()),
        };
        let mut device_groups = super::engine::device_groups(
            &layout,
            &options,
            engine.groups,
            cluster.as_ref().map(|c| &c.world),
            &hosted_ranks,
            cooperative,
        )?
        .into_iter();
        let make_backend = |rank| (engine.backend)(rank, threads);
        let devices = hosted_ranks
            .into_iter()
            .map(|rank| {
                let graphs = (&per_tp[..], &stages);
                super::device::make_device(
                    rank,
                    &layout,
                    graphs,
                    &options,
                    &make_backend,
                    comms.take(rank),
                    device_groups
                        .next()
                        .ok_or_else(|| Error::internal("no device groups for a device"))?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let schedule = options.optimizer.lr_schedule()?;
        let last_trace = Vec::new();
        let mut warnings = super::amp::warnings(&options);
        warnings.extend(
            cluster
                .iter()
                .flat_map(|c| c.world.warnings.iter().cloned()),
        );
        let mut t = Trainer {
            model,
            compiled,
            stages,
            layout,
            devices,
            options,
            inputs,
            step: 0,
            schedule,
            auto_report,
            slicing,
            last_trace,
            cluster,
            amp_report,
            scaler,
            warnings,
            cooperative,
        };
        t.broadcast_initial_weights()?;
        t.shard_parameters()?;
        Ok(t)
    }

    /// Replica 0's initial weights go to every replica (EPL's variable broadcast).
    fn broadcast_initial_weights(&mut self) -> Result<()> {
        if self.layout.replicas == 1 {
            return Ok(());
        }
        if self.cooperative {
            let groups = self.layout.dp_groups();
            return super::cooperative::broadcast_initial_weights(&mut self.devices, &groups);
        }
        let results = parallel(&mut self.devices, |_, d| {
            let Some(dp) = d.dp.first() else {
                return Ok(());
            };
            d.execs
                .iter_mut()
                .try_for_each(|e| e.broadcast_params(dp.as_ref()))
        });
        results.into_iter().collect()
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

    /// Phase one of a step on every device: pipeline work, then gradient reduction.
    pub(super) fn run_devices(
        &mut self,
        batch: &Batch<'_>,
        train: bool,
    ) -> Result<(Vec<DeviceResult>, Instant)> {
        self.check_batch(batch)?;
        let (r_count, m_count) = (self.layout.replicas, self.layout.micro_batches);
        let per_replica: Vec<Vec<BTreeMap<String, HostView<'_>>>> = (0..r_count)
            .map(|r| {
                (0..m_count)
                    .map(|m| self.chunk(batch, r * m_count + m))
                    .collect()
            })
            .collect();
        let mean = self.options.config.communication.gradients_reduce_method
            == crate::config::ReduceMethod::Mean;
        // The loss scale is undone with the mean's division, before norms and clipping.
        let loss_scale = self.scaler.as_ref().map_or(1.0, |s| s.scale);
        let grad_scale = if mean {
            1.0 / (r_count * m_count) as f32
        } else {
            1.0
        } / loss_scale;
        let loss = self
            .compiled
            .loss
            .ok_or_else(|| Error::internal("no loss"))?;
        let reduce = grad_reduce(&self.options, grad_scale);
        let epoch = Instant::now();
        // What every device's plan shares; each fills in its own place below.
        let shared = StepPlan {
            work: &[],
            rank_of_stage: &[],
            micro_inputs: &[],
            loss,
            outputs: &self.compiled.outputs,
            ctx: KernelCtx {
                step: self.step + 1,
                loss_scale,
            },
            train,
            reduce: &reduce,
            local_clip: self.local_clip(mean, loss_scale),
            epoch,
            grad_shard: None,
            stage_of: &self.stages.stage_of,
            qualified: false,
        };
        let rank_of_stage = ranks_of_stages(&self.devices, &self.layout);
        let shards = self.options.config.zero.level.shards_grads();
        let plans = self
            .devices
            .iter()
            .zip(&rank_of_stage)
            .map(|(d, rank_of_stage)| StepPlan {
                work: &self.layout.work[d.position],
                rank_of_stage,
                micro_inputs: &per_replica[d.replica],
                grad_shard: shards.then_some((d.replica, self.layout.replicas)),
                qualified: d.stages.len() > 1,
                ..shared
            })
            .collect::<Vec<_>>();
        let run = if self.cooperative {
            let names: Vec<String> = (0..self.devices.len())
                .map(|i| self.device_name(i))
                .collect();
            super::cooperative::compute_all(
                &mut self.devices,
                &plans,
                &names,
                &self.layout.dp_groups(),
            )
        } else {
            compute_threaded(&mut self.devices, &plans)
        };
        match run {
            Ok(results) => Ok((results, epoch)),
            Err(cause) => {
                // Fresh communicators so the trainer stays usable: the failed groups stay
                // failed, and a failed cooperative step leaves its messages queued.
                self.renew_communicators()?;
                Err(cause)
            }
        }
    }

    /// EPL's `communication.clip_after_allreduce=false` with clipping and several replicas:
    /// each replica clips its local gradient, so the driver clips nothing afterwards.
    fn clips_locally(&self) -> bool {
        self.options.optimizer.grad_clip.is_some()
            && !self.options.config.communication.clip_after_allreduce
            && self.layout.replicas > 1
    }

    fn local_clip(&self, mean: bool, loss_scale: f32) -> Option<LocalClip> {
        let max_norm = self
            .options
            .optimizer
            .grad_clip
            .filter(|_| self.clips_locally())?;
        let (r, m) = (
            self.layout.replicas as f32,
            self.layout.micro_batches as f32,
        );
        let (micro_scale, replica_scale) = if mean { (1.0 / m, 1.0 / r) } else { (1.0, 1.0) };
        let micro_scale = micro_scale / loss_scale;
        Some(LocalClip {
            max_norm,
            micro_scale,
            replica_scale,
        })
    }

    fn renew_communicators(&mut self) -> Result<()> {
        // Across processes a failure is the job's end: the peers cannot agree to meet again, so
        // the failed groups stay failed and later steps fail at once, naming the first failure.
        if self.cluster.is_some() {
            return Ok(());
        }
        let mut comms = self.layout.communicators(&self.options)?;
        for (rank, d) in self.devices.iter_mut().enumerate() {
            let c = comms.take(rank);
            (d.world, d.dp, d.gather, d.tp) = (c.world, c.dp, c.gather, c.tp);
        }
        Ok(())
    }

    /// One optimizer step on a global batch.
    pub fn step<D: AsHostView>(&mut self, batch: &BTreeMap<String, D>) -> Result<StepReport> {
        let t0 = Instant::now();
        let (device_results, epoch) = match self.run_devices(&views(batch), true) {
            Ok(r) => r,
            Err(e) => {
                self.discard_all();
                return Err(e);
            }
        };
        let (loss, outputs) = self.merge(&device_results);
        let step = self.step + 1;
        // Replicas hold identical reduced gradients: the global norm sums replica 0's stages;
        // under ZeRO v1/v2 each holds its own chunks, which together make the whole.
        let sharded_grads = self.options.config.zero.level.shards_grads();
        let sq: f64 = self
            .devices
            .iter()
            .zip(&device_results)
            .filter(|(d, _)| d.replica == 0 || sharded_grads)
            .map(|(_, r)| r.sum_squares)
            .sum();
        let (loss, sq, outputs) = self.across_processes(&device_results, loss, sq, outputs)?;
        let norm = sq.sqrt();
        // Dynamic loss scaling: an overflowed gradient halves the scale and skips the step.
        let scaled = self.scaler.as_mut().map(|s| s.update(norm.is_finite()));
        if loss.is_finite() && scaled == Some(true) {
            self.discard_all();
            return Ok(self.skipped_report(loss, t0));
        }
        if !loss.is_finite() || !norm.is_finite() {
            self.discard_all();
            let what = if loss.is_finite() {
                format!("gradient norm ({norm})")
            } else {
                format!("loss ({loss})")
            };
            return Err(Error::NonFinite { step, what });
        }
        // With local clipping each replica clipped before the all-reduce; nothing more here.
        let coef = match self.options.optimizer.grad_clip {
            Some(max) if !self.clips_locally() => crate::optim::clip_coefficient(norm, max),
            _ => 1.0,
        };
        let lr = self.schedule.lr_at(step);
        let rule = self.options.optimizer.rule(lr);
        let rule_for = |_: &str| rule.clone();
        let times = if self.cooperative {
            super::cooperative::update(
                &mut self.devices,
                &self.layout.dp_groups(),
                step,
                &rule_for,
                coef,
            )?
        } else {
            let sharded_params = self.options.config.zero.level.shards_params();
            update_threaded(&mut self.devices, step, &rule_for, coef, sharded_params)?
        };
        self.last_trace = device_results.into_iter().map(|r| r.trace).collect();
        for (trace, (start, end)) in self.last_trace.iter_mut().zip(times) {
            let start_us = start.duration_since(epoch).as_secs_f64() * 1e6;
            let dur_us = end.duration_since(start).as_secs_f64() * 1e6;
            trace.spans.push(super::trace::Span {
                name: "optimizer".into(),
                category: "optimizer",
                start_us,
                dur_us,
            });
        }
        self.step = step;
        let idle = super::trace::measured_idle(&self.last_trace);
        let ideal_idle = super::trace::ideal_idle(self.layout.stages, self.layout.micro_batches);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(StepReport {
            step,
            loss,
            lr,
            grad_norm: Some(norm as f32),
            ms,
            outputs,
            idle,
            ideal_idle,
            loss_scale: self.scaler.as_ref().map(|s| s.scale),
            skipped: false,
            skipped_steps: self.scaler.as_ref().map_or(0, |s| s.skipped),
        })
    }

    fn discard_all(&mut self) {
        for exec in self.devices.iter_mut().flat_map(|d| d.execs.iter_mut()) {
            exec.discard_grads();
            exec.release_transients();
        }
    }
}

/// The optimizer step on every device, each on its own thread; returns each one's span.
fn update_threaded<B: Backend>(
    devices: &mut [Device<B>],
    step: u64,
    rule_for: &(dyn Fn(&str) -> UpdateRule + Sync),
    coef: f32,
    sharded_params: bool,
) -> Result<Vec<(Instant, Instant)>> {
    let results = parallel(devices, |_, d| {
        let start = Instant::now();
        for (exec, zero) in d.execs.iter_mut().zip(&mut d.zero) {
            if coef < 1.0 {
                exec.scale_grads(coef)?;
            }
            // Without ZeRO parameters update one at a time in place: no temporaries, so
            // apply groups change nothing; nor under v2, whose pieces are gathered when
            // next used. Under v0/v1 each group is updated, then gathered.
            let Some(plan) = zero.as_mut().filter(|_| !sharded_params) else {
                exec.apply(step, rule_for)?;
                continue;
            };
            let group =
                d.dp.first()
                    .ok_or_else(|| Error::internal("ZeRO without a data-parallel communicator"))?;
            for g in 0..plan.group_count() {
                exec.apply_where(step, rule_for, &|p| plan.in_group(p, g))?;
                plan.gather(d.replica, g, &mut exec.params_host_mut()?, group.as_ref())?;
            }
        }
        Ok((start, Instant::now()))
    });
    results.into_iter().collect()
}

/// For each device, the rank in its world group of every stage of its pipeline replica.
fn ranks_of_stages<B: Backend>(devices: &[Device<B>], layout: &Layout) -> Vec<Vec<usize>> {
    devices
        .iter()
        .map(|d| {
            (0..layout.stages)
                .map(|s| layout.rank_of_tp(d.replica, s, d.tp_rank))
                .collect()
        })
        .collect()
}

/// Every device's compute phase on a thread of its own. On failure, the cause: not a peer's
/// "the group failed" echo.
fn compute_threaded<B: Backend>(
    devices: &mut [Device<B>],
    plans: &[StepPlan<'_>],
) -> Result<Vec<DeviceResult>> {
    let results = parallel(devices, |i, d| {
        // A panic on one device must fail its peers' collectives, not leave them waiting.
        let r = crate::error::catch_panic("a device thread", || d.compute(&plans[i]));
        if let Err(e) = &r {
            d.abort(&e.to_string());
        }
        r
    });
    if results.iter().any(|r| r.is_err()) {
        let errors: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
        let cause = errors
            .iter()
            .find(|e| e.code() != "WEFT_COLLECTIVE")
            .unwrap_or(&errors[0])
            .clone();
        return Err(cause);
    }
    results.into_iter().collect()
}

/// Run `f` on every device (with its index), each on its own thread (inline when there is one
/// device).
pub(super) fn parallel<B: Backend, T: Send>(
    devices: &mut [Device<B>],
    f: impl Fn(usize, &mut Device<B>) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    if devices.len() == 1 {
        return devices
            .iter_mut()
            .enumerate()
            .map(|(i, d)| f(i, d))
            .collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter_mut()
            .enumerate()
            .map(|(i, d)| {
                let f = &f;
                s.spawn(move || f(i, d))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::internal("a device thread panicked")))
            })
            .collect()
    })
}
