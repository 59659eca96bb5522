//! A trainer spread over several processes (data parallelism): process p hosts devices
//! `p*L .. (p+1)*L` of a world of `processes x L` devices, one replica each. Every process
//! builds the same model with the same seed and feeds the same global batch; its replicas take
//! their rows exactly as in one process. What differs: the gradient reducer's groups are TCP
//! ones, and the step's loss and gradient norm are gathered from every process, so every
//! process reports the same global numbers, bit for bit those of one process.

use std::ops::Range;

use super::device::DeviceResult;
use super::layout::{Comms, Layout};
use super::options::TrainerOptions;
use crate::collectives::{Communicator, tcp::TcpCommunicator};
use crate::config::ZeroLevel;
use crate::error::{Error, Result};
use crate::exec::HostData;
use crate::process::ProcessWorld;
use std::time::Duration;

pub(super) struct Cluster {
    pub(super) world: ProcessWorld,
    /// CPU devices each process hosts.
    pub(super) local_devices: usize,
}

impl Cluster {
    /// Join the job named by `options.processes`; None for a single process.
    pub(super) fn join(options: &TrainerOptions, local_devices: usize) -> Result<Option<Cluster>> {
        let Some(rank) = &options.processes else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(options.config.communication.timeout_s as u64);
        let world = ProcessWorld::join(rank, timeout)?;
        let cluster = Cluster {
            world,
            local_devices,
        };
        cluster.check_agreement(options)?;
        Ok(Some(cluster))
    }

    pub(super) fn world_devices(&self) -> usize {
        self.world.rank.world * self.local_devices
    }

    /// The global device ranks this process hosts.
    pub(super) fn local_ranks(&self) -> Range<usize> {
        let first = self.world.rank.rank * self.local_devices;
        first..first + self.local_devices
    }

    /// Every process must have the same devices, batch and seed, or the replicas would diverge
    /// (or the groups never meet); say which process differs.
    fn check_agreement(&self, options: &TrainerOptions) -> Result<()> {
        let mine = [self.local_devices, options.batch, options.seed as usize];
        let names = ["devices (cpu:N)", "batch", "seed"];
        let p = self.world.rank.world;
        let mut all = vec![0.0f32; mine.len() * p];
        let values: Vec<f32> = mine.iter().map(|&v| v as f32).collect();
        self.world.procs.all_gather(&values, &mut all)?;
        for (r, theirs) in all.chunks(mine.len()).enumerate() {
            for ((name, &a), &b) in names.iter().zip(&values).zip(theirs) {
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

    /// What this build does across processes: data parallelism, nothing sharded.
    pub(super) fn check_layout(&self, layout: &Layout, options: &TrainerOptions) -> Result<()> {
        if layout.ranks > 1 {
            return Err(Error::unsupported(
                "pipeline stages across processes",
                format!(
                    "the model has {} stages; a multi-process job trains data-parallel replicas \
                     of a one-stage model (pipeline stages run within one process: --devices cpu:N)",
                    layout.stages
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

    /// The gradient reducer's groups over every device of the job, one per channel; this
    /// process holds its devices' members. No world group: one stage sends nothing.
    pub(super) fn communicators(&self, layout: &Layout, options: &TrainerOptions) -> Result<Comms> {
        let n = layout.ranks * layout.replicas;
        let all: Vec<usize> = (0..n).collect();
        let local: Vec<usize> = self.local_ranks().collect();
        let mut dp: Vec<Vec<Box<dyn Communicator>>> = (0..n).map(|_| Vec::new()).collect();
        for _ in 0..options.config.communication.num_communicators.max(1) {
            let members: Vec<TcpCommunicator> = self.world.group(&all, &local)?;
            for (&rank, c) in local.iter().zip(members) {
                dp[rank].push(Box::new(c));
            }
        }
        Ok(Comms::data_parallel(dp))
    }

    /// The step's loss and squared gradient norm over every process's devices, computed as one
    /// process computes them: every loss in device order, summed in f64; replica 0's norm.
    pub(super) fn global(&self, results: &[DeviceResult]) -> Result<(f32, f64)> {
        let k = results.first().map_or(0, |r| r.losses.len());
        if results.iter().any(|r| r.losses.len() != k) {
            return Err(Error::internal(
                "devices reported different numbers of losses",
            ));
        }
        // Per device: the f64 norm as two f32 bit patterns (gathering copies bits), then losses.
        let mut mine = Vec::with_capacity(results.len() * (2 + k));
        for r in results {
            let bits = r.sum_squares.to_bits();
            mine.push(f32::from_bits((bits >> 32) as u32));
            mine.push(f32::from_bits(bits as u32));
            mine.extend_from_slice(&r.losses);
        }
        let mut all = vec![0.0f32; mine.len() * self.world.rank.world];
        self.world.procs.all_gather(&mine, &mut all)?;
        let per_device: Vec<&[f32]> = all.chunks(2 + k).collect();
        let losses: Vec<f32> = per_device
            .iter()
            .flat_map(|d| d[2..].iter().copied())
            .collect();
        let loss =
            (losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len().max(1) as f64) as f32;
        let sq = per_device.first().map_or(0.0, |d| {
            f64::from_bits((u64::from(d[0].to_bits()) << 32) | u64::from(d[1].to_bits()))
        });
        Ok((loss, sq))
    }
}

/// One merged output of a step: name, dims, rows of every local replica in order.
pub(super) type Output = (String, Vec<usize>, HostData);

impl Cluster {
    /// Every process's rows of each output, in global replica order (process-major, as the
    /// devices are numbered), so every rank returns the outputs one process would. Values travel
    /// as bit patterns, so i32 outputs cross unchanged.
    pub(super) fn global_outputs(&self, outputs: Vec<Output>) -> Result<Vec<Output>> {
        let p = self.world.rank.world;
        outputs
            .into_iter()
            .map(|(name, mut dims, data)| {
                let bits: Vec<f32> = match &data {
                    HostData::F32(v) => v.clone(),
                    HostData::I32(v) => v.iter().map(|&x| f32::from_bits(x as u32)).collect(),
                };
                let mut all = vec![0.0f32; bits.len() * p];
                self.world.procs.all_gather(&bits, &mut all)?;
                if let Some(rows) = dims.first_mut() {
                    *rows *= p;
                }
                let data = match data {
                    HostData::F32(_) => HostData::F32(all),
                    HostData::I32(_) => {
                        HostData::I32(all.iter().map(|x| x.to_bits() as i32).collect())
                    }
                };
                Ok((name, dims, data))
            })
            .collect()
    }
}

impl super::trainer::Trainer {
    /// This process's place in a multi-process job; None when the trainer runs in one process.
    pub fn process_rank(&self) -> Option<&crate::process::ProcessRank> {
        self.cluster.as_ref().map(|c| &c.world.rank)
    }
}
