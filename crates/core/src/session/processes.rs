//! A trainer spread over several processes: each process is a host of EPL's cluster with its
//! L devices, and hosts the ranks whose stage slice lands on its devices (with the default
//! enumeration, process p hosts ranks `p*L .. (p+1)*L`; `cluster.device_place_prefer_intra_node
//! =false` or `aware_row` place them elsewhere; no tensor parallelism). Every process builds
//! the same model with the same seed and feeds the same global batch; its devices take their
//! rows and stages exactly as in one process. What differs: the communicators are TCP ones
//! (the world group carries pipeline sends, one group per stage position reduces gradients),
//! and the step's losses, gradient norm and outputs are gathered from every process, so every
//! process reports the same global numbers, bit for bit those of one process.

use crate::exec::Backend;

use super::device::DeviceResult;
use super::layout::{Comms, Layout};
use super::options::TrainerOptions;
use crate::collectives::Communicator;
use crate::config::ZeroLevel;
use crate::error::{Error, Result};
use crate::exec::HostData;
use crate::ir::DType;
use crate::process::ProcessWorld;
use std::time::Duration;

pub(super) struct Cluster {
    pub(super) world: ProcessWorld,
    /// CPU devices each process hosts.
    pub(super) local_devices: usize,
    /// The global device ranks this process runs, ascending (`host_ranks` sets them).
    hosted: Vec<usize>,
}

impl Cluster {
    /// Join the job named by `options.processes`; None for a single process.
    pub(super) fn join(options: &TrainerOptions, local_devices: usize) -> Result<Option<Cluster>> {
        let Some(rank) = &options.processes else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(options.config.communication.timeout_s as u64);
        let insecure = options.config.communication.insecure_store;
        let world = ProcessWorld::join(rank, timeout, insecure)?;
        let first = world.rank.rank * local_devices;
        let cluster = Cluster {
            world,
            local_devices,
            hosted: (first..first + local_devices).collect(),
        };
        cluster.check_agreement(options)?;
        Ok(Some(cluster))
    }

    pub(super) fn world_devices(&self) -> usize {
        self.world.rank.world * self.local_devices
    }

    /// The global device ranks this process hosts.
    pub(super) fn local_ranks(&self) -> &[usize] {
        &self.hosted
    }

    /// One host per process, in rank order, named `node<N>:<local rank>` (N = rank / local
    /// world, the launchers' node-major numbering) so `aware_row` sees which share a machine.
    pub(super) fn hosts(&self) -> Vec<crate::strategy::Host> {
        let per_node = self.world.rank.local_world.max(1);
        (0..self.world.rank.world)
            .map(|p| {
                let name = format!("node{}:{}", p / per_node, p % per_node);
                crate::strategy::Host::new(name, self.local_devices)
            })
            .collect()
    }

    /// Host the ranks EPL's slicing puts on this process's devices: rank (replica r, stage s)
    /// runs where stage s's replica r is. Replicas of a stage must sit in process order, since
    /// outputs are gathered process by process; another order is refused, naming the stage.
    pub(super) fn host_ranks(
        &mut self,
        slicing: Option<&crate::strategy::Slicing>,
        layout: &Layout,
    ) -> Result<()> {
        let Some(sl) = slicing else {
            return Ok(());
        };
        let process_of = |s: usize, r: usize| -> Option<usize> {
            let d = *sl.taskgraphs.get(s)?.replicas.get(r)?.first()?;
            sl.host_order.get(sl.cluster.host_of(d)).copied()
        };
        let mut hosted = Vec::new();
        for s in 0..layout.ranks {
            let mut last = 0;
            for r in 0..layout.replicas {
                let p = process_of(s, r).ok_or_else(|| {
                    Error::internal(format!(
                        "the slicing has no device for stage {s} replica {r}"
                    ))
                })?;
                if p < last {
                    return Err(Error::unsupported(
                        "this placement across processes",
                        format!(
                            "stage {s}'s replica {r} is on process {p}, before replica {}'s \
                             process {last}; outputs are gathered in process order",
                            r - 1
                        ),
                    ));
                }
                last = p;
                if p == self.world.rank.rank {
                    hosted.push(layout.rank_of(r, s));
                }
            }
        }
        hosted.sort_unstable();
        if hosted.len() != self.local_devices {
            return Err(Error::config(
                "cluster.layout",
                format!(
                    "the {} layout gives process {} {}, but it has {}",
                    sl.layout.name(),
                    self.world.rank.rank,
                    crate::strategy::plural(hosted.len(), "device"),
                    self.local_devices
                ),
            ));
        }
        self.hosted = hosted;
        Ok(())
    }

    /// Every process must have the same devices, batch and seed, or the replicas would diverge
    /// (or the groups never meet); say which process differs.
    fn check_agreement(&self, options: &TrainerOptions) -> Result<()> {
        let mine = [
            self.local_devices as u64,
            options.batch as u64,
            options.seed,
        ];
        let names = ["devices (cpu:N)", "batch", "seed"];
        let p = self.world.rank.world;
        // Bit patterns, exact where an f32 value would round (a seed of 2^24 or more).
        let values = crate::collectives::u64s_to_words(&mine);
        let mut all = vec![0.0f32; values.len() * p];
        self.world.procs.all_gather(&values, &mut all)?;
        let all = crate::collectives::words_to_u64s(&all);
        for (r, theirs) in all.chunks(mine.len()).enumerate() {
            for ((name, &a), &b) in names.iter().zip(&mine).zip(theirs) {
                if a != b {
                    return Err(Error::config(
                        "processes",
                        format!(
                            "process {r} has {name} {b} but process {} has {a}: every process \
                             of a job must be started with the same flags",
                            self.world.rank.rank
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What this build does across processes: data and pipeline parallelism; not ZeRO nor
    /// tensor parallelism.
    pub(super) fn check_layout(&self, layout: &Layout, options: &TrainerOptions) -> Result<()> {
        if layout.tp > 1 {
            return Err(Error::unsupported(
                "tensor parallelism across processes",
                format!(
                    "the model splits tensors {} ways; a multi-process job trains data-parallel \
                     replicas and pipeline stages (run split scopes within one process)",
                    layout.tp
                ),
            ));
        }
        if options.config.zero.level != ZeroLevel::Off {
            return Err(Error::unsupported(
                "zero.level across processes",
                "ZeRO's sharded state is gathered within one process for checkpoints; unset \
                 zero.level for multi-process runs",
            ));
        }
        Ok(())
    }

    /// This process's devices' communicators, as `Layout::communicators` makes them for one
    /// process: a world group when there are pipeline stages to connect, and per channel one
    /// group per stage position over the replicas. Every process makes every group, in the
    /// same order, joining with the members it hosts (possibly none).
    pub(super) fn communicators(&self, layout: &Layout, options: &TrainerOptions) -> Result<Comms> {
        let n = layout.ranks * layout.replicas;
        let local = self.local_ranks();
        let mut world: Vec<Option<Box<dyn Communicator>>> = (0..n).map(|_| None).collect();
        if layout.ranks > 1 {
            let all: Vec<usize> = (0..n).collect();
            for (&rank, c) in local.iter().zip(self.world.group(&all, local)?) {
                world[rank] = Some(Box::new(c));
            }
        }
        let mut dp: Vec<Vec<Box<dyn Communicator>>> = (0..n).map(|_| Vec::new()).collect();
        if layout.replicas > 1 {
            for _ in 0..layout.dp_channels(options) {
                for group in layout.dp_groups() {
                    let members: Vec<usize> = (0..group.len())
                        .filter(|&i| local.contains(&group[i]))
                        .collect();
                    for (&i, c) in members.iter().zip(self.world.group(&group, &members)?) {
                        dp[group[i]].push(Box::new(c));
                    }
                }
            }
        }
        Ok(Comms::new(world, dp))
    }

    /// The step's loss and squared gradient norm over every process's devices, computed as one
    /// process computes them: every loss in rank order, summed in f64; the sum of replica 0's
    /// ranks' norms. `micro_batches` bounds the losses of one device.
    pub(super) fn global(&self, results: &[DeviceResult], layout: &Layout) -> Result<(f32, f64)> {
        let m = layout.micro_batches;
        let width = 4 + m;
        // Per device: its rank and the f64 norm as f32 bit patterns (gathering copies bits),
        // the number of losses, then the losses padded to M.
        let mut mine = vec![0.0f32; results.len() * width];
        for ((r, row), &rank) in results.iter().zip(mine.chunks_mut(width)).zip(&self.hosted) {
            if r.losses.len() > m {
                return Err(Error::internal(
                    "a device reported more losses than micro-batches",
                ));
            }
            let bits = r.sum_squares.to_bits();
            row[0] = f32::from_bits(rank as u32);
            row[1] = f32::from_bits((bits >> 32) as u32);
            row[2] = f32::from_bits(bits as u32);
            row[3] = r.losses.len() as f32;
            row[4..4 + r.losses.len()].copy_from_slice(&r.losses);
        }
        let mut all = vec![0.0f32; mine.len() * self.world.rank.world];
        self.world.procs.all_gather(&mine, &mut all)?;
        let mut rows: Vec<&[f32]> = all.chunks(width).collect();
        rows.sort_by_key(|d| d[0].to_bits());
        let losses: Vec<f32> = rows
            .iter()
            .flat_map(|d| d[4..4 + d[3] as usize].iter().copied())
            .collect();
        let loss = super::batch::mean_loss(&losses);
        // Replica 0 is ranks 0..ranks (replica-major ranks).
        let sq: f64 = rows[..layout.ranks]
            .iter()
            .map(|d| f64::from_bits((u64::from(d[1].to_bits()) << 32) | u64::from(d[2].to_bits())))
            .sum();
        Ok((loss, sq))
    }
}

const DTYPES: [DType; 4] = [DType::F32, DType::I32, DType::BF16, DType::F16];

/// A buffer of any dtype as f32 bit patterns, one per element (gathering copies bits).
fn carry(data: &HostData) -> Vec<f32> {
    match data {
        HostData::F32(v) => v.clone(),
        HostData::I32(v) => v.iter().map(|&x| f32::from_bits(x as u32)).collect(),
        HostData::BF16(v) | HostData::F16(v) => {
            v.iter().map(|&x| f32::from_bits(u32::from(x))).collect()
        }
    }
}

/// The inverse of `carry`.
fn uncarry(dtype: DType, bits: &[f32]) -> HostData {
    let u = bits.iter().map(|x| x.to_bits());
    match dtype {
        DType::F32 => HostData::F32(bits.to_vec()),
        DType::I32 => HostData::I32(u.map(|x| x as i32).collect()),
        DType::BF16 => HostData::BF16(u.map(|x| x as u16).collect()),
        DType::F16 => HostData::F16(u.map(|x| x as u16).collect()),
    }
}

/// One merged output of a step: name, dims, rows of every local replica in order.
pub(super) type Output = (String, Vec<usize>, HostData);

impl Cluster {
    /// Every process's rows of each output, in global replica order (process-major, as the
    /// devices are numbered), so every rank returns the outputs one process would. Processes
    /// without the output's stage contribute nothing. Values travel as bit patterns, so i32
    /// outputs cross unchanged.
    pub(super) fn global_outputs(
        &self,
        outputs: Vec<Output>,
        results: &[DeviceResult],
    ) -> Result<Vec<Output>> {
        outputs
            .into_iter()
            .map(|(name, dims, data)| {
                // (replica, micro-batch) parts of this output computed here.
                let local_parts: usize = results
                    .iter()
                    .map(|r| r.outputs.iter().filter(|o| o.1 == name).count())
                    .sum();
                let carried = if local_parts == 0 {
                    Vec::new()
                } else {
                    carry(&data)
                };
                let (all, total_parts, dtype) =
                    self.gather_uneven(&carried, local_parts, data.dtype())?;
                let mut dims = dims;
                if let Some(rows) = dims.first_mut() {
                    *rows = *rows / local_parts.max(1) * total_parts.max(1);
                }
                let data = uncarry(dtype, &all);
                Ok((name, dims, data))
            })
            .collect()
    }

    /// Concatenate every process's `data` in process order, whatever their lengths; with the
    /// total of their `parts` counts and the dtype of the first process that has any part.
    fn gather_uneven(
        &self,
        data: &[f32],
        parts: usize,
        dtype: DType,
    ) -> Result<(Vec<f32>, usize, DType)> {
        let p = self.world.rank.world;
        // Counts travel as u32 bit patterns: exact where an f32 value would round above 2^24.
        let mut sizes = vec![0.0f32; 3 * p];
        let code = DTYPES.iter().position(|&d| d == dtype).unwrap_or(0);
        let mine = [data.len() as u32, parts as u32, code as u32].map(f32::from_bits);
        self.world.procs.all_gather(&mine, &mut sizes)?;
        let count = |x: f32| x.to_bits() as usize;
        let lens: Vec<usize> = sizes.chunks(3).map(|c| count(c[0])).collect();
        let total_parts = sizes.chunks(3).map(|c| count(c[1])).sum();
        let dtype = sizes
            .chunks(3)
            .find(|c| count(c[1]) > 0)
            .map_or(dtype, |c| DTYPES[count(c[2]).min(DTYPES.len() - 1)]);
        let max = lens.iter().copied().max().unwrap_or(0);
        let mut padded = data.to_vec();
        padded.resize(max, 0.0);
        let mut all = vec![0.0f32; max * p];
        self.world.procs.all_gather(&padded, &mut all)?;
        let out = all
            .chunks(max.max(1))
            .zip(&lens)
            .flat_map(|(c, &len)| c[..len].iter().copied())
            .collect();
        Ok((out, total_parts, dtype))
    }
}

impl<B: Backend> super::trainer::Trainer<B> {
    /// A step's loss, squared gradient norm and outputs over the whole job: this process's own
    /// when it runs alone.
    pub(super) fn across_processes(
        &self,
        results: &[DeviceResult],
        loss: f32,
        sq: f64,
        outputs: Vec<Output>,
    ) -> Result<(f32, f64, Vec<Output>)> {
        let Some(c) = &self.cluster else {
            return Ok((loss, sq, outputs));
        };
        let (loss, sq) = c.global(results, &self.layout)?;
        Ok((loss, sq, c.global_outputs(outputs, results)?))
    }

    /// This process's place in a multi-process job; None when the trainer runs in one process.
    pub fn process_rank(&self) -> Option<&crate::process::ProcessRank> {
        self.cluster.as_ref().map(|c| &c.world.rank)
    }
}
