//! The device layout of a compile: stages x replicas x micro-batches, each stage's pipeline work
//! list (from the schedule generators), and the communicators that connect the devices.

use super::device::Work;
use super::options::TrainerOptions;
use crate::collectives::{Communicator, LocalGroup};
use crate::config::PipelineStrategy;
use crate::error::{Error, Result};
use crate::schedule::{self, Action as ScheduleAction};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub stages: usize,
    pub replicas: usize,
    pub micro_batches: usize,
    /// Compute work of each stage for one step, in schedule order.
    pub work: Vec<Vec<Work>>,
    /// The schedule the work came from (rendered by `weft plan`).
    pub schedule: Option<schedule::Schedule>,
}

impl Layout {
    pub fn new(options: &TrainerOptions, devices: usize, stages: usize) -> Result<Layout> {
        if stages > devices {
            return Err(Error::config(
                "devices",
                format!("the model has {stages} pipeline stages but only {devices} device(s); each stage needs its own device"),
            ));
        }
        if devices % stages != 0 {
            return Err(Error::config(
                "devices",
                format!("{devices} devices do not divide into replicas of {stages} stages ({devices} % {stages} = {})", devices % stages),
            ));
        }
        let replicas = devices / stages;
        let m = options.config.pipeline.num_micro_batch.max(1);
        let b = options.batch;
        if b % (replicas * m) != 0 {
            return Err(Error::batch(format!(
                "global batch B={b} does not split into R={replicas} replicas x M={m} micro-batches (B must be a multiple of R*M={})",
                replicas * m
            )));
        }
        let (work, schedule) = pipeline_work(options.config.pipeline.strategy, stages, m)?;
        Ok(Layout { stages, replicas, micro_batches: m, work, schedule })
    }

    /// Refuse the `communication.*` settings whose behaviour this build does not implement for
    /// this layout, instead of ignoring them.
    pub fn check_communication(&self, options: &TrainerOptions, graph: &crate::ir::Graph) -> Result<()> {
        if self.replicas == 1 {
            return Ok(());
        }
        let comm = &options.config.communication;
        if !comm.clip_after_allreduce && options.optimizer.grad_clip.is_some() {
            return Err(Error::unsupported(
                "communication.clip_after_allreduce=false with gradient clipping",
                "clipping each replica's local gradients before the all-reduce is not implemented; \
                 weft clips the global norm of the reduced gradients (set it to true, weft's default)",
            ));
        }
        let sparse = graph.grads.iter().any(|(_, g)| matches!(graph.node(*g).op, crate::ir::Op::EmbeddingBackward { .. }));
        if !comm.sparse_as_dense && sparse {
            return Err(Error::unsupported(
                "communication.sparse_as_dense=false",
                "the sparse all-gather path for embedding gradients is not implemented; weft \
                 all-reduces them densely (set it to true, weft's default)",
            ));
        }
        Ok(())
    }

    /// One world communicator per device, and one per stage's replicas when data-parallel.
    pub fn communicators(&self, options: &TrainerOptions) -> Result<Comms> {
        let n = self.stages * self.replicas;
        let timeout = Duration::from_secs(options.config.communication.timeout_s as u64);
        let mut world: Vec<Option<Box<dyn Communicator>>> = (0..n).map(|_| None).collect();
        let mut dp: Vec<Vec<Box<dyn Communicator>>> = (0..n).map(|_| Vec::new()).collect();
        if n > 1 {
            for (rank, c) in LocalGroup::new(n, timeout).into_iter().enumerate() {
                world[rank] = Some(Box::new(c));
            }
        }
        if self.replicas > 1 {
            let groups: Vec<Vec<usize>> =
                (0..self.stages).map(|s| (0..self.replicas).map(|r| r * self.stages + s).collect()).collect();
            // In-process channels run back to back; with NCCL each is its own stream.
            for _ in 0..options.config.communication.num_communicators.max(1) {
                for (group, comms) in groups.iter().zip(LocalGroup::subgroups(n, &groups, timeout)?) {
                    for (&rank, c) in group.iter().zip(comms) {
                        dp[rank].push(Box::new(c));
                    }
                }
            }
        }
        Ok(Comms { world, dp })
    }
}

pub struct Comms {
    world: Vec<Option<Box<dyn Communicator>>>,
    dp: Vec<Vec<Box<dyn Communicator>>>,
}

impl Comms {
    #[allow(clippy::type_complexity)]
    pub fn take(&mut self, rank: usize) -> (Option<Box<dyn Communicator>>, Vec<Box<dyn Communicator>>) {
        (self.world[rank].take(), std::mem::take(&mut self.dp[rank]))
    }
}

/// Each stage's forward/backward order for one step. One stage: F0 B0 F1 B1 ... (gradient
/// accumulation); several: the generator `pipeline.strategy` names.
fn pipeline_work(strategy: PipelineStrategy, stages: usize, m: usize) -> Result<(Vec<Vec<Work>>, Option<schedule::Schedule>)> {
    if stages == 1 {
        let work = (0..m).flat_map(|i| [Work::Forward(i), Work::Backward(i)]).collect();
        return Ok((vec![work], None));
    }
    let sched = match strategy {
        PipelineStrategy::PreferForward => schedule::gpipe(stages, m)?,
        PipelineStrategy::PreferBackward => schedule::one_f_one_b(stages, m)?,
        PipelineStrategy::PreferBackwardOptimizer => schedule::one_f_one_b_extra_warmup(stages, m)?,
    };
    let mut work = vec![Vec::new(); stages];
    for program in &sched.programs {
        for a in program {
            match *a {
                ScheduleAction::Forward { stage, mb } => work[stage.index()].push(Work::Forward(mb.index())),
                ScheduleAction::Backward { stage, mb } => work[stage.index()].push(Work::Backward(mb.index())),
                _ => {}
            }
        }
    }
    Ok((work, Some(sched)))
}
