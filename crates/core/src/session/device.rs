//! One device of a compiled layout: the executors of the pipeline stages it hosts (one, or
//! several with interleaved virtual stages), its communicators, and what it does in a step (its
//! pipeline work, then gradient reduction across replicas).

use super::device_reduce::DeviceOverlap;
use super::engine::DeviceGroups;
use super::overlap::{BucketLayout, Overlap, ShardOf};
use super::trace::DeviceTrace;
use super::zero::ShardPlan;
use crate::collectives::{Communicator, DeviceCommunicator};
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::{
    Executor, GradHook, GradReduce, GradSink, HostData, HostView, KernelCtx, Link, ProgramKind,
};
use crate::ir::NodeId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// One unit of pipeline work: the forward or backward of a stage for a micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Forward { stage: usize, mb: usize },
    Backward { stage: usize, mb: usize },
}

impl Work {
    /// `F3` with one stage per device, `F1.3` (stage 1, micro-batch 3) with several.
    pub fn label(&self, qualified: bool) -> String {
        let (l, s, m) = match *self {
            Work::Forward { stage, mb } => ("F", stage, mb),
            Work::Backward { stage, mb } => ("B", stage, mb),
        };
        if qualified {
            format!("{l}{s}.{m}")
        } else {
            format!("{l}{m}")
        }
    }
}

pub(super) struct Device<B: Backend> {
    /// One executor per hosted stage, in `stages` order.
    pub execs: Vec<Executor<B>>,
    pub stages: Vec<usize>,
    /// This device's rank within its pipeline replica.
    pub position: usize,
    pub replica: usize,
    /// All devices; ranks are `replica * ranks_per_replica + position`.
    pub world: Option<Box<dyn Communicator>>,
    /// Channels to the devices at the same position in other replicas (data parallelism;
    /// `communication.num_communicators` of them), empty with one replica.
    pub dp: Vec<Box<dyn Communicator>>,
    /// ZeRO v2: the channel to the same peers over which parameters are gathered.
    pub gather: Option<Box<dyn Communicator>>,
    /// This device's index in its tensor-parallel group (0 without tensor parallelism).
    pub tp_rank: usize,
    /// The tensor-parallel group of this device's stage replica (None without).
    pub tp: Option<Box<dyn Communicator>>,
    /// Gradient bucket buffers kept between steps.
    pub spare: Vec<Vec<f32>>,
    /// ZeRO: how each hosted stage's parameters are sharded over the replicas (`execs` order).
    pub zero: Vec<Option<ShardPlan>>,
    /// Each hosted stage's gradient buckets (`execs` order), planned once.
    pub buckets: Vec<Arc<BucketLayout>>,
    /// The engine's device-memory groups (pipeline sends, gradient reduction), where it has
    /// them; the host communicators above carry the rest.
    pub device: DeviceGroups<B::Buffer>,
}

/// A stage's gradient reducer: over host copies, or in device memory when the engine has
/// gradient groups.
enum Reducer<'s, Buf: Send> {
    Host(Overlap<'s>),
    Device(DeviceOverlap<'s, Buf>),
}

impl<'s, Buf: Send + 's> Reducer<'s, Buf> {
    /// `f` run with a gradient sink feeding this reducer.
    fn feed(&mut self, f: impl FnOnce(&mut GradSink<'_, Buf>) -> Result<()>) -> Result<()> {
        match self {
            Reducer::Host(r) => {
                let hook: &mut GradHook<'_> = &mut |p, g| r.ready(p, g);
                f(&mut GradSink::Host(hook))
            }
            Reducer::Device(r) => f(&mut GradSink::Device(&mut |p, g| r.ready(p, g))),
        }
    }

    /// Every accumulated gradient at once (the reduction was not overlapped with backward).
    fn feed_all<B: Backend<Buffer = Buf>>(&mut self, exec: &mut Executor<B>) -> Result<()> {
        match self {
            Reducer::Host(r) => exec.each_grad(&mut |p, g| r.ready(p, g)),
            Reducer::Device(r) => exec.hand_over_all(&mut |p, g| r.ready(p, g)),
        }
    }

    fn finish<B: Backend<Buffer = Buf>>(
        self,
        exec: &mut Executor<B>,
        scale: f32,
        spare: &mut Vec<Vec<f32>>,
    ) -> Result<()> {
        match self {
            Reducer::Host(r) => r.finish(exec, scale, spare),
            Reducer::Device(r) => r.finish(exec, scale),
        }
    }
}

/// Local clipping before the all-reduce (see `StepPlan::local_clip`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LocalClip {
    pub max_norm: f32,
    pub micro_scale: f32,
    pub replica_scale: f32,
}

/// What a device hands back from the compute phase of a step.
#[derive(Default)]
pub(super) struct DeviceResult {
    /// Loss per micro-batch (only on the device computing the loss).
    pub losses: Vec<f32>,
    /// Outputs per micro-batch: (micro-batch, name, data).
    pub outputs: Vec<(usize, String, HostData)>,
    pub sum_squares: f64,
    pub trace: DeviceTrace,
}

#[derive(Clone, Copy)]
pub(super) struct StepPlan<'a> {
    pub work: &'a [Work],
    pub rank_of_stage: &'a [usize],
    pub micro_inputs: &'a [BTreeMap<String, HostView<'a>>],
    pub loss: NodeId,
    pub outputs: &'a [(String, NodeId)],
    pub ctx: KernelCtx,
    pub train: bool,
    /// Gradient reduction across replicas; its scale is 1/(R*M) for the mean.
    pub reduce: &'a GradReduce,
    /// EPL's `communication.clip_after_allreduce=false`: clip each replica's local gradient to
    /// this norm before the all-reduce (replicas of one device only). Holds (max norm, the
    /// micro-batch scale applied first, the replica scale applied after the sum).
    pub local_clip: Option<LocalClip>,
    /// When the step started on the driver (all spans are relative to it).
    pub epoch: Instant,
    /// ZeRO v1: reduce-scatter gradients, this device keeping its replica's chunks.
    pub grad_shard: ShardOf,
    /// The stage of every node (where the loss and outputs are taken).
    pub stage_of: &'a [usize],
    /// Whether work labels name the stage (`F1.3`: a device hosting several stages).
    pub qualified: bool,
}

impl<B: Backend> Device<B> {
    /// Fail this device's communication groups so peers stop waiting for it.
    pub fn abort(&self, reason: &str) {
        if let Some(w) = &self.world {
            w.abort(reason);
        }
        self.dp.iter().for_each(|c| c.abort(reason));
        if let Some(g) = &self.gather {
            g.abort(reason);
        }
        if let Some(t) = &self.tp {
            t.abort(reason);
        }
        if let Some(w) = &self.device.world {
            w.abort(reason);
        }
        self.device.dp.iter().for_each(|c| c.abort(reason));
    }

    pub fn exec_of(&self, stage: usize) -> Option<&Executor<B>> {
        self.stages
            .iter()
            .position(|&s| s == stage)
            .map(|i| &self.execs[i])
    }

    pub fn exec_of_mut(&mut self, stage: usize) -> Option<&mut Executor<B>> {
        self.stages
            .iter()
            .position(|&s| s == stage)
            .map(move |i| &mut self.execs[i])
    }

    /// How this device's programs reach the other stages, its peers' parameters and its
    /// tensor-parallel group in this step (None with one device).
    pub fn link<'a>(&'a self, plan: &'a StepPlan<'_>) -> Option<Link<'a, B::Buffer>> {
        link(&self.world, &self.gather, &self.tp, &self.device, plan)
    }

    /// Run this device's pipeline work for one step; gradients are reduced across replicas
    /// bucket by bucket during each stage's last backward (overlapping its computation).
    pub fn compute(&mut self, plan: &StepPlan<'_>) -> Result<DeviceResult> {
        let Device {
            execs,
            stages,
            world,
            dp,
            gather,
            tp,
            tp_rank,
            spare,
            buckets,
            device,
            ..
        } = self;
        let all_channels: Vec<&dyn Communicator> = dp.iter().map(|c| c.as_ref()).collect();
        let device_channels: Vec<&dyn DeviceCommunicator<B::Buffer>> =
            device.dp.iter().map(|c| c.as_ref()).collect();
        // Each hosted stage reduces over its own set of channels (`Layout::dp_channels`).
        let per_stage = all_channels.len() / execs.len().max(1);
        let range_of = |i: usize| i * per_stage..(i + 1) * per_stage;
        // Local clipping needs the whole local gradient before anything is reduced.
        let overlap = plan.train && !all_channels.is_empty() && plan.local_clip.is_none();
        let last_backward: Vec<Option<usize>> = stages
            .iter()
            .map(|&st| {
                plan.work
                    .iter()
                    .rposition(|w| matches!(*w, Work::Backward { stage, .. } if stage == st))
            })
            .collect();
        let link = link(world, gather, tp, device, plan);
        std::thread::scope(|scope| {
            let mut out = DeviceResult::default();
            let mut reducers: Vec<Option<Reducer<'_, B::Buffer>>> =
                (0..execs.len()).map(|_| None).collect();
            let mut reduce_start = None;
            // Stage i's reducer over its channels, fed in the order its gradients become final.
            let start_reducer = |i: usize, spare: &mut Vec<Vec<f32>>| {
                let layout = &buckets[i];
                if !device_channels.is_empty() {
                    let channels = &device_channels[range_of(i)];
                    return Reducer::Device(DeviceOverlap::start(scope, channels, layout));
                }
                Reducer::Host(Overlap::start(
                    scope,
                    &all_channels[range_of(i)],
                    layout,
                    plan.reduce,
                    plan.grad_shard,
                    spare,
                ))
            };
            for (wi, w) in plan.work.iter().enumerate() {
                let Some((kind, stage, _)) = program_of(*w, plan.train) else {
                    continue;
                };
                let i = exec_index(stages, stage)?;
                if overlap && kind == ProgramKind::Backward && last_backward[i] == Some(wi) {
                    let mut r = start_reducer(i, spare);
                    reduce_start.get_or_insert_with(Instant::now);
                    r.feed(|sink| {
                        run_item(&mut execs[i], link.as_ref(), plan, wi, &mut out, Some(sink))
                    })?;
                    reducers[i] = Some(r);
                } else {
                    run_item(&mut execs[i], link.as_ref(), plan, wi, &mut out, None)?;
                }
            }
            if !plan.train {
                return Ok(out);
            }
            let t0 = reduce_start.unwrap_or_else(Instant::now);
            let scale = local_clip_scale(execs, plan)?;
            for (i, (exec, reducer)) in execs.iter_mut().zip(reducers).enumerate() {
                match reducer {
                    Some(r) => r.finish(exec, scale, spare)?,
                    None if all_channels.is_empty() => {
                        if scale != 1.0 {
                            exec.scale_grads(scale)?;
                        }
                    }
                    // Not overlapped (local clipping): the same reducer, fed all at once.
                    None => {
                        let mut r = start_reducer(i, spare);
                        r.feed_all(exec)?;
                        r.finish(exec, scale, spare)?;
                    }
                }
                out.sum_squares += sum_squares(exec, *tp_rank)?;
            }
            out.trace
                .push(plan.epoch, t0, "allreduce".into(), "allreduce");
            Ok(out)
        })
    }
}

type Channel = Option<Box<dyn Communicator>>;

/// A device's link from its fields (apart, so its executors can be borrowed beside it).
pub(super) fn link<'a, Buf>(
    world: &'a Channel,
    gather: &'a Channel,
    tp: &'a Channel,
    device: &'a DeviceGroups<Buf>,
    plan: &'a StepPlan<'_>,
) -> Option<Link<'a, Buf>> {
    world.as_deref().map(|comm| Link {
        comm,
        device: device.world.as_deref(),
        rank_of_stage: plan.rank_of_stage,
        params: gather.as_deref(),
        tp: tp.as_deref(),
    })
}

/// The program, stage and micro-batch of a work item; None for a backward in evaluation.
pub(super) fn program_of(w: Work, train: bool) -> Option<(ProgramKind, usize, usize)> {
    match w {
        Work::Forward { stage, mb } if train => Some((ProgramKind::Forward, stage, mb)),
        Work::Forward { stage, mb } => Some((ProgramKind::Eval, stage, mb)),
        Work::Backward { stage, mb } if train => Some((ProgramKind::Backward, stage, mb)),
        Work::Backward { .. } => None,
    }
}

/// Which of a device's executors runs `stage`.
pub(super) fn exec_index(stages: &[usize], stage: usize) -> Result<usize> {
    stages
        .iter()
        .position(|&s| s == stage)
        .ok_or_else(|| Error::internal("work for a stage this device does not host"))
}

/// Run work item `wi` of `plan` on `exec` (the executor of its stage), trace it, and take the
/// loss and outputs it finished.
pub(super) fn run_item<B: Backend>(
    exec: &mut Executor<B>,
    link: Option<&Link<'_, B::Buffer>>,
    plan: &StepPlan<'_>,
    wi: usize,
    out: &mut DeviceResult,
    sink: Option<&mut GradSink<'_, B::Buffer>>,
) -> Result<()> {
    let w = plan.work[wi];
    let Some((kind, stage, mb)) = program_of(w, plan.train) else {
        return Ok(());
    };
    let (t0, wait0) = (Instant::now(), exec.recv_wait);
    exec.run_with(kind, mb, &plan.micro_inputs[mb], &plan.ctx, link, sink)?;
    let category = if kind == ProgramKind::Backward {
        "backward"
    } else {
        "forward"
    };
    out.trace
        .push(plan.epoch, t0, w.label(plan.qualified), category);
    out.trace.recv_wait_us += (exec.recv_wait - wait0).as_secs_f64() * 1e6;
    // Backward may still read the loss or an output (e.g. logits): take them after it.
    if kind != ProgramKind::Forward {
        take_results(exec, plan, stage, mb, out)?;
    }
    Ok(())
}

/// The loss and outputs of micro-batch `mb` that `stage` computed.
fn take_results<B: Backend>(
    exec: &mut Executor<B>,
    plan: &StepPlan<'_>,
    stage: usize,
    mb: usize,
    out: &mut DeviceResult,
) -> Result<()> {
    // One node may be the loss and outputs at once: download each node once.
    let mut taken: Vec<(NodeId, HostData)> = Vec::new();
    let mut take = |id: NodeId, exec: &mut Executor<B>| -> Result<HostData> {
        if let Some((_, d)) = taken.iter().find(|(n, _)| *n == id) {
            return Ok(d.clone());
        }
        let d = exec.take_value(mb, id)?;
        taken.push((id, d.clone()));
        Ok(d)
    };
    if plan.stage_of[plan.loss.index()] == stage {
        let l = take(plan.loss, exec)?;
        out.losses.push(l.as_f32().map_or(f32::NAN, |v| v[0]));
    }
    for (name, id) in plan.outputs {
        if plan.stage_of[id.index()] == stage {
            out.outputs.push((mb, name.clone(), take(*id, exec)?));
        }
    }
    Ok(())
}

/// The scale the reduced gradients get: the mean's, or under EPL's local clipping (each
/// replica clips its own gradient before the sum) the replica scale after clipping here.
pub(super) fn local_clip_scale<B: Backend>(
    execs: &mut [Executor<B>],
    plan: &StepPlan<'_>,
) -> Result<f32> {
    let Some(clip) = plan.local_clip else {
        return Ok(plan.reduce.scale);
    };
    let mut local = 0.0;
    for exec in execs.iter_mut() {
        exec.scale_grads(clip.micro_scale)?;
        local += exec.grad_sum_squares()?;
    }
    let coef = crate::optim::clip_coefficient(local.sqrt(), clip.max_norm);
    if coef < 1.0 {
        execs.iter_mut().try_for_each(|e| e.scale_grads(coef))?;
    }
    Ok(clip.replica_scale)
}

/// A stage's share of the global gradient norm: a tensor-parallel device other than the first
/// counts only its shards (the replicated parameters are the first's too).
pub(super) fn sum_squares<B: Backend>(exec: &Executor<B>, tp_rank: usize) -> Result<f64> {
    if tp_rank == 0 {
        return exec.grad_sum_squares();
    }
    let graph = exec.graph();
    exec.grad_sum_squares_of(|p| crate::passes::is_shard(graph, p))
}

/// Device `rank` of the layout: an executor per stage it hosts, on its tensor-parallel index's
/// graph (`graphs`: the graph of each index, and the stage map), with its communicators.
pub(super) fn make_device<B: Backend>(
    rank: usize,
    layout: &super::layout::Layout,
    graphs: (&[crate::ir::Graph], &crate::passes::StageMap),
    options: &super::options::TrainerOptions,
    backend: &dyn Fn(usize) -> Result<B>,
    comms: super::layout::DeviceComms,
    device: DeviceGroups<B::Buffer>,
) -> Result<Device<B>> {
    if !device.dp.is_empty() && device.dp.len() != comms.dp.len() {
        return Err(Error::internal(format!(
            "device {rank} has {} device gradient channels for {} host ones",
            device.dp.len(),
            comms.dp.len()
        )));
    }
    let (per_tp, stages) = graphs;
    let (replica, position, tp_rank) = layout.coordinates(rank);
    let hosted: Vec<usize> = (position..layout.stages).step_by(layout.ranks).collect();
    let residency = crate::exec::Residency {
        offload: options.config.offload.level == crate::config::OffloadLevel::V0,
        sharded: options.config.zero.level.shards_params(),
    };
    let mut execs = hosted
        .iter()
        .map(|&s| {
            let graph = per_tp[tp_rank].clone();
            Executor::with_residency(backend(rank)?, graph, stages, s, options.seed, residency)
        })
        .collect::<Result<Vec<_>>>()?;
    let reduce = super::trainer::grad_reduce(options, 1.0);
    let buckets: Vec<Arc<BucketLayout>> = execs
        .iter()
        .map(|e| Arc::new(BucketLayout::new(&e.grad_order(), &reduce)))
        .collect();
    let zero = shard_plans(&mut execs, &buckets, options, replica, layout.replicas);
    Ok(Device {
        execs,
        stages: hosted,
        position,
        replica,
        world: comms.world,
        dp: comms.dp,
        gather: comms.gather,
        tp_rank,
        tp: comms.tp,
        spare: Vec::new(),
        zero,
        buckets,
        device,
    })
}

/// ZeRO: each hosted stage's shard plan, with its executor told which shard it updates (and,
/// for v1, to free each gradient once it is in its bucket).
fn shard_plans<B: Backend>(
    execs: &mut [Executor<B>],
    buckets: &[Arc<BucketLayout>],
    options: &super::options::TrainerOptions,
    replica: usize,
    replicas: usize,
) -> Vec<Option<ShardPlan>> {
    execs
        .iter_mut()
        .zip(buckets)
        .map(|(exec, layout)| {
            let level = options.config.zero.level;
            (level != crate::config::ZeroLevel::Off).then(|| {
                let groups = options.config.optimizer.num_apply_group;
                let plan = ShardPlan::new(layout, replicas, groups);
                exec.set_owned(plan.owned(replica));
                if level.shards_grads() {
                    exec.set_release_notified();
                }
                plan
            })
        })
        .collect()
}
