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
    /// Devices per pipeline replica: `stages / virtual_stages` (stage s runs on rank s % ranks).
    pub ranks: usize,
    /// Stages per device (`pipeline.num_virtual_stages`, interleaved 1F1B when > 1).
    pub virtual_stages: usize,
    pub replicas: usize,
    /// Tensor-parallel devices per stage (the deviceCount of the model's split scopes; 1
    /// without them): the innermost axis of the device ranks.
    pub tp: usize,
    pub micro_batches: usize,
    /// Compute work of each rank of a pipeline replica for one step, in schedule order.
    pub work: Vec<Vec<Work>>,
    /// The schedule the work came from (rendered by `weft plan`).
    pub schedule: Option<schedule::Schedule>,
}

impl Layout {
    pub fn new(
        options: &TrainerOptions,
        devices: usize,
        stages: usize,
        tp: usize,
    ) -> Result<Layout> {
        crate::resource::check_count(
            "communication.num_communicators",
            options.config.communication.num_communicators as u64,
            crate::resource::MAX_COMMUNICATORS,
            "each is a thread on every device",
        )?;
        let v = options.config.pipeline.num_virtual_stages.max(1);
        if !stages.is_multiple_of(v) {
            return Err(Error::config(
                "pipeline.num_virtual_stages",
                format!(
                    "pipeline.num_virtual_stages={v} does not divide the model's {stages} stages"
                ),
            ));
        }
        let ranks = stages / v;
        if tp > 1 && !devices.is_multiple_of(ranks * tp) {
            return Err(Error::config(
                "devices",
                format!(
                    "{devices} devices do not divide into replicas of {ranks} stage(s) x {tp} \
                     tensor-parallel devices ({devices} % {} = {})",
                    ranks * tp,
                    devices % (ranks * tp)
                ),
            ));
        }
        let devices = devices / tp;
        if ranks > devices {
            return Err(Error::config(
                "devices",
                format!(
                    "the model has {stages} pipeline stages but only {devices} device(s); each stage needs its own device"
                ),
            ));
        }
        if !devices.is_multiple_of(ranks) {
            return Err(Error::config(
                "devices",
                format!(
                    "{devices} devices do not divide into replicas of {ranks} stages ({devices} % {ranks} = {})",
                    devices % ranks
                ),
            ));
        }
        let replicas = devices / ranks;
        let m = options.config.pipeline.num_micro_batch.max(1);
        let b = options.batch;
        if !b.is_multiple_of(replicas * m) {
            return Err(Error::batch(format!(
                "global batch B={b} does not split into R={replicas} replicas x M={m} micro-batches (B must be a multiple of R*M={})",
                replicas * m
            )));
        }
        let (work, schedule) = pipeline_work(options.config.pipeline.strategy, ranks, v, m)?;
        Ok(Layout {
            stages,
            ranks,
            virtual_stages: v,
            replicas,
            tp,
            micro_batches: m,
            work,
            schedule,
        })
    }

    /// World rank of `stage` in pipeline replica `replica`, tensor-parallel index 0.
    pub fn rank_of(&self, replica: usize, stage: usize) -> usize {
        self.rank_of_tp(replica, stage, 0)
    }

    /// World rank of tensor-parallel device `t` of `stage` in pipeline replica `replica`:
    /// ranks are replica-major, then stage, then tensor-parallel index.
    pub fn rank_of_tp(&self, replica: usize, stage: usize, t: usize) -> usize {
        (replica * self.ranks + stage % self.ranks) * self.tp + t
    }

    /// (replica, position in the pipeline, tensor-parallel index) of world rank `rank`.
    pub fn coordinates(&self, rank: usize) -> (usize, usize, usize) {
        let t = rank % self.tp;
        let r = rank / self.tp;
        (r / self.ranks, r % self.ranks, t)
    }

    /// ZeRO shards across data-parallel replicas: it needs more than one (never a silent
    /// no-op).
    pub fn check_zero(&self, options: &TrainerOptions) -> Result<()> {
        use crate::config::ZeroLevel;
        let level = options.config.zero.level;
        let name = match level {
            ZeroLevel::Off => return Ok(()),
            ZeroLevel::V0 => "v0",
            ZeroLevel::V1 => "v1",
            ZeroLevel::V2 => "v2",
        };
        if self.replicas == 1 {
            return Err(Error::config(
                "zero.level",
                format!(
                    "zero.level='{name}' shards optimizer state across data-parallel replicas, \
                     but this layout has 1 replica ({} stage(s) on {} device(s)); give it more \
                     devices than its stages need, or unset zero.level",
                    self.stages, self.ranks
                ),
            ));
        }
        Ok(())
    }

    /// Refuse the `communication.*` settings whose behaviour this build does not implement for
    /// this layout, instead of ignoring them.
    pub fn check_communication(
        &self,
        options: &TrainerOptions,
        graph: &crate::ir::Graph,
    ) -> Result<()> {
        let comm = &options.config.communication;
        if self.tp > 1 && !comm.clip_after_allreduce && options.optimizer.grad_clip.is_some() {
            return Err(Error::unsupported(
                "communication.clip_after_allreduce=false with tensor parallelism",
                "each device's local norm would cover only its shards; set it to true (weft's \
                 default: clip the global norm, which counts every shard once)",
            ));
        }
        if self.replicas == 1 {
            return Ok(());
        }
        if !comm.clip_after_allreduce && options.optimizer.grad_clip.is_some() && self.ranks > 1 {
            return Err(Error::unsupported(
                "communication.clip_after_allreduce=false with gradient clipping and pipeline stages",
                "each replica's local norm would span its stages' devices; local clipping is \
                 implemented for data parallelism with one device per replica (or set it to true, \
                 weft's default: clip the global norm of the reduced gradients)",
            ));
        }
        let sparse = graph
            .grads
            .iter()
            .any(|(_, g)| matches!(graph.node(*g).op, crate::ir::Op::EmbeddingBackward { .. }));
        if !comm.sparse_as_dense && sparse {
            return Err(Error::unsupported(
                "communication.sparse_as_dense=false",
                "the sparse all-gather path for embedding gradients is not implemented; weft \
                 all-reduces them densely (set it to true, weft's default)",
            ));
        }
        Ok(())
    }

    /// One world communicator per device; when data-parallel, channels to the device's peers
    /// in the other replicas: `communication.num_communicators` for gradients and, under ZeRO
    /// v2, one more for gathering parameters (apart, so that a gather in the next micro-batch's
    /// forward never queues behind a gradient bucket); and one per tensor-parallel group.
    /// Gradient channels per device: `communication.num_communicators` for each stage it hosts.
    /// A device hosting several (interleaved) stages runs one reducer per stage, and two
    /// reducers posting on one channel could order their collectives differently on different
    /// replicas; with a set each, every channel sees one reducer's buckets in bucket order.
    pub fn dp_channels(&self, options: &TrainerOptions) -> usize {
        options.config.communication.num_communicators.max(1) * self.virtual_stages
    }

    /// The data-parallel groups: for each stage position and tensor-parallel index, the devices
    /// holding it in every replica, in replica order (none with one replica).
    pub fn dp_groups(&self) -> Vec<Vec<usize>> {
        if self.replicas <= 1 {
            return Vec::new();
        }
        (0..self.ranks * self.tp)
            .map(|pt| {
                let (p, t) = (pt / self.tp, pt % self.tp);
                (0..self.replicas)
                    .map(|r| self.rank_of_tp(r, p, t))
                    .collect()
            })
            .collect()
    }

    pub fn communicators(&self, options: &TrainerOptions) -> Result<Comms> {
        let n = self.ranks * self.replicas * self.tp;
        let timeout = Duration::from_secs(options.config.communication.timeout_s as u64);
        let mut comms = Comms {
            world: (0..n).map(|_| None).collect(),
            dp: (0..n).map(|_| Vec::new()).collect(),
            gather: (0..n).map(|_| None).collect(),
            tp: (0..n).map(|_| None).collect(),
        };
        if n > 1 {
            for (rank, c) in LocalGroup::new(n, timeout).into_iter().enumerate() {
                comms.world[rank] = Some(Box::new(c));
            }
        }
        if self.replicas > 1 {
            let groups = self.dp_groups();
            let channels = self.dp_channels(options);
            let gather = usize::from(options.config.zero.level.shards_params());
            // In-process channels run back to back; with NCCL each is its own stream.
            for channel in 0..channels + gather {
                for (group, peers) in groups
                    .iter()
                    .zip(LocalGroup::subgroups(n, &groups, timeout)?)
                {
                    for (&rank, c) in group.iter().zip(peers) {
                        if channel < channels {
                            comms.dp[rank].push(Box::new(c));
                        } else {
                            comms.gather[rank] = Some(Box::new(c));
                        }
                    }
                }
            }
        }
        if self.tp > 1 {
            let groups: Vec<Vec<usize>> = (0..n / self.tp)
                .map(|g| (g * self.tp..(g + 1) * self.tp).collect())
                .collect();
            for (group, peers) in groups
                .iter()
                .zip(LocalGroup::subgroups(n, &groups, timeout)?)
            {
                for (&rank, c) in group.iter().zip(peers) {
                    comms.tp[rank] = Some(Box::new(c));
                }
            }
        }
        Ok(comms)
    }
}

/// A device's communicators: see `Layout::communicators`.
pub struct DeviceComms {
    pub world: Option<Box<dyn Communicator>>,
    pub dp: Vec<Box<dyn Communicator>>,
    pub gather: Option<Box<dyn Communicator>>,
    /// The device's tensor-parallel group (None without tensor parallelism).
    pub tp: Option<Box<dyn Communicator>>,
}

pub struct Comms {
    world: Vec<Option<Box<dyn Communicator>>>,
    dp: Vec<Vec<Box<dyn Communicator>>>,
    gather: Vec<Option<Box<dyn Communicator>>>,
    tp: Vec<Option<Box<dyn Communicator>>>,
}

impl Comms {
    /// Communicators made elsewhere (another engine), indexed by world rank; no gather or
    /// tensor-parallel groups (ZeRO v2 and tensor parallelism are not offered there).
    pub(super) fn new(
        world: Vec<Option<Box<dyn Communicator>>>,
        dp: Vec<Vec<Box<dyn Communicator>>>,
    ) -> Comms {
        let none = || (0..dp.len()).map(|_| None).collect();
        Comms {
            world,
            gather: none(),
            tp: none(),
            dp,
        }
    }

    pub fn take(&mut self, rank: usize) -> DeviceComms {
        DeviceComms {
            world: self.world[rank].take(),
            dp: std::mem::take(&mut self.dp[rank]),
            gather: self.gather[rank].take(),
            tp: self.tp[rank].take(),
        }
    }
}

/// Each rank's forward/backward order for one step. One stage: F0 B0 F1 B1 ... (gradient
/// accumulation); several: the generator `pipeline.strategy` names, or interleaved 1F1B when
/// ranks host several virtual stages.
fn pipeline_work(
    strategy: PipelineStrategy,
    ranks: usize,
    v: usize,
    m: usize,
) -> Result<(Vec<Vec<Work>>, Option<schedule::Schedule>)> {
    if ranks * v == 1 {
        let work = (0..m)
            .flat_map(|mb| {
                [
                    Work::Forward { stage: 0, mb },
                    Work::Backward { stage: 0, mb },
                ]
            })
            .collect();
        return Ok((vec![work], None));
    }
    let sched = match (v, strategy) {
        (v, _) if v > 1 => schedule::interleaved(ranks, v, m)?,
        (_, PipelineStrategy::PreferForward) => schedule::gpipe(ranks, m)?,
        (_, PipelineStrategy::PreferBackward) => schedule::one_f_one_b(ranks, m)?,
        (_, PipelineStrategy::PreferBackwardOptimizer) => {
            schedule::one_f_one_b_extra_warmup(ranks, m)?
        }
    };
    let work = sched
        .programs
        .iter()
        .map(|program| {
            program
                .iter()
                .filter_map(|a| match *a {
                    ScheduleAction::Forward { stage, mb } => Some(Work::Forward {
                        stage: stage.index(),
                        mb: mb.index(),
                    }),
                    ScheduleAction::Backward { stage, mb } => Some(Work::Backward {
                        stage: stage.index(),
                        mb: mb.index(),
                    }),
                    _ => None,
                })
                .collect()
        })
        .collect();
    Ok((work, Some(sched)))
}
