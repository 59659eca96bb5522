//! Parameter access on a trainer: names and shapes, which devices hold a parameter, reading
//! and writing it on every replica.

use super::trainer::Trainer;
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::{Executor, HostData};
use crate::ir::Graph;

impl<B: Backend> Trainer<B> {
    /// (name, shape) of every parameter, in creation order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.compiled
            .parameters()
            .into_iter()
            .map(|(id, n)| match &self.compiled.node(id).op {
                // A tensor-parallel shard is reported at the whole parameter's shape.
                crate::ir::Op::Parameter {
                    init: crate::ir::Init::Shard { full, .. },
                    ..
                } => (n.to_string(), full.clone()),
                _ => (n.to_string(), self.compiled.node(id).shape.to_vec()),
            })
            .collect()
    }

    pub fn parameter_names(&self) -> Vec<String> {
        self.parameter_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// The devices holding a parameter (one per replica, replica 0 first) and its stage.
    pub(super) fn owners(&self, name: &str) -> Result<(Vec<usize>, usize)> {
        let (id, _) = self
            .compiled
            .parameters()
            .into_iter()
            .find(|(_, n)| *n == name)
            .ok_or_else(|| Error::Checkpoint {
                path: String::new(),
                message: format!("the model has no parameter '{name}'"),
            })?;
        let stage = self.stages.stage_of[id.index()];
        let devices: Vec<usize> = (0..self.devices.len())
            .filter(|&i| self.devices[i].stages.contains(&stage))
            .collect();
        if devices.is_empty() {
            // A multi-process job whose pipeline stage runs in another process.
            return Err(Error::unsupported(
                format!("reading or writing parameter '{name}' here"),
                format!(
                    "its stage {stage} runs in another process of the job; checkpoints of \
                     pipelines spread over processes are not implemented"
                ),
            ));
        }
        Ok((devices, stage))
    }

    /// The executors holding a parameter at tensor-parallel rank `rank` (0 without tensor
    /// parallelism), one per replica in replica order.
    fn rank_execs(&self, name: &str, rank: usize) -> Result<Vec<&Executor<B>>> {
        let (devices, stage) = self.owners(name)?;
        let mut mine: Vec<usize> = devices
            .into_iter()
            .filter(|&d| self.devices[d].tp_rank == rank)
            .collect();
        mine.sort_by_key(|&d| self.devices[d].replica);
        mine.into_iter()
            .map(|d| {
                self.devices[d]
                    .exec_of(stage)
                    .ok_or_else(|| Error::internal("owner without its stage"))
            })
            .collect()
    }

    /// A parameter as each replica holds it (replica order); replicas must stay identical.
    pub fn replica_parameters(&self, name: &str) -> Result<Vec<HostData>> {
        self.rank_execs(name, 0)?
            .into_iter()
            .map(|e| e.read_parameter(name))
            .collect()
    }

    /// A parameter's whole optimizer state (empty before its first update): replica 0's, under
    /// ZeRO every replica's range put back in place, under tensor parallelism every rank's
    /// shard assembled. Each device's state is read once.
    pub fn optimizer_state(&self, name: &str) -> Result<Vec<HostData>> {
        let whole = self.whole(name, |rank| {
            // A replica whose ZeRO range of this parameter is empty keeps no state for it.
            let mut full: Vec<Vec<f32>> = Vec::new();
            for exec in self.rank_execs(name, rank)? {
                let range = exec.state_range(name)?;
                let len = exec.param_len(name)?;
                for (i, part) in exec.read_state(name)?.iter().enumerate() {
                    let part = f32_of(part, name)?;
                    if part.len() != range.len() || range.end > len {
                        return Err(Error::internal(format!(
                            "state of '{name}' has the wrong size"
                        )));
                    }
                    if full.len() <= i {
                        full.push(vec![0.0; len]);
                    }
                    full[i][range.clone()].copy_from_slice(part);
                }
                if range.len() == len {
                    break; // not sharded: replica 0 holds it all
                }
            }
            Ok(full)
        })?;
        Ok(whole.into_iter().map(HostData::F32).collect())
    }

    /// A whole parameter: replica 0's, under ZeRO v2 every replica's piece put in place, under
    /// tensor parallelism every rank's shard assembled.
    pub fn parameter(&self, name: &str) -> Result<HostData> {
        let whole = self.whole(name, |rank| {
            let execs = self.rank_execs(name, rank)?;
            let Some(pieces) = execs[0].param_pieces(name)? else {
                return Ok(vec![
                    f32_of(&execs[0].read_parameter(name)?, name)?.to_vec(),
                ]);
            };
            let mut whole = vec![0.0f32; pieces.iter().map(|r| r.len()).sum()];
            for (exec, range) in execs.into_iter().zip(pieces) {
                let piece = exec.read_parameter(name)?;
                let piece = f32_of(&piece, name)?;
                if piece.len() != range.len() {
                    return Err(Error::internal(format!(
                        "piece of '{name}' has the wrong size"
                    )));
                }
                whole[range].copy_from_slice(piece);
            }
            Ok(vec![whole])
        })?;
        let whole = whole.into_iter().next();
        whole
            .map(HostData::F32)
            .ok_or_else(|| Error::internal(format!("no value for parameter '{name}'")))
    }

    /// The whole dims and the cut of a tensor-parallel shard parameter.
    fn tp_shard(&self, name: &str) -> Option<(Vec<usize>, crate::ir::Cut)> {
        self.compiled.parameters().into_iter().find_map(|(id, n)| {
            match &self.compiled.node(id).op {
                crate::ir::Op::Parameter {
                    init: crate::ir::Init::Shard { full, cut, .. },
                    ..
                } if n == name => Some((full.clone(), *cut)),
                _ => None,
            }
        })
    }

    /// The whole tensors of `name` (the parameter, or its optimizer state buffers) from what
    /// `local` gives at each tensor-parallel rank (the rank's own tensors, whole across
    /// replicas): rank 0's, or every rank's shards assembled tensor by tensor (a padded
    /// vocabulary assembled at its padded length, then cut back).
    fn whole(
        &self,
        name: &str,
        local: impl Fn(usize) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Vec<Vec<f32>>> {
        let Some((full, cut)) = self.tp_shard(name) else {
            return local(0);
        };
        let ranks = (0..cut.parts).map(local).collect::<Result<Vec<_>>>()?;
        let count = ranks.first().map_or(0, Vec::len);
        if ranks.iter().any(|r| r.len() != count) {
            return Err(Error::internal(format!(
                "the tensor-parallel ranks hold different numbers of tensors for '{name}'"
            )));
        }
        (0..count)
            .map(|i| {
                let shards: Vec<f32> = ranks.iter().flat_map(|r| r[i].iter().copied()).collect();
                crate::exec::tp::assemble_padded(&shards, &full, cut)
            })
            .collect()
    }

    /// Write a whole parameter (`state`: false) or its whole optimizer state on every device
    /// holding it; a tensor-parallel device keeps its shard, cut as initialisation cuts.
    pub(super) fn write_whole(&mut self, name: &str, data: &[HostData], state: bool) -> Result<()> {
        let Some((full, cut)) = self.tp_shard(name) else {
            return self.for_each_owner(name, |e| match state {
                true => e.write_state(name, data),
                false => e.write_parameter(name, &data[0]),
            });
        };
        let (devices, stage) = self.owners(name)?;
        for d in devices {
            let rank = self.devices[d].tp_rank;
            let shards = data
                .iter()
                .map(|t| {
                    let shard = crate::exec::tp::cut_padded(f32_of(t, name)?, &full, cut, rank)?;
                    Ok(HostData::F32(shard))
                })
                .collect::<Result<Vec<_>>>()?;
            let exec = self.devices[d]
                .exec_of_mut(stage)
                .ok_or_else(|| Error::internal("owner without its stage"))?;
            match state {
                true => exec.write_state(name, &shards)?,
                false => exec.write_parameter(name, &shards[0])?,
            }
        }
        Ok(())
    }

    /// ZeRO v2: every replica keeps only its piece of each parameter from now on (after the
    /// initial weights are equal everywhere).
    pub(super) fn shard_parameters(&mut self) -> Result<()> {
        if !self.options.config.zero.level.shards_params() {
            return Ok(());
        }
        for d in &mut self.devices {
            let replica = d.replica;
            for (exec, plan) in d.execs.iter_mut().zip(&d.zero) {
                let plan = plan
                    .as_ref()
                    .ok_or_else(|| Error::internal("ZeRO v2 without a shard plan"))?;
                exec.shard_params(plan.param_pieces(), replica)?;
            }
        }
        Ok(())
    }

    /// Apply `f` to the executor holding `name` on every replica.
    pub(super) fn for_each_owner(
        &mut self,
        name: &str,
        mut f: impl FnMut(&mut Executor<B>) -> Result<()>,
    ) -> Result<()> {
        let (devices, stage) = self.owners(name)?;
        for d in devices {
            f(self.devices[d]
                .exec_of_mut(stage)
                .ok_or_else(|| Error::internal("owner without its stage"))?)?;
        }
        Ok(())
    }

    /// The user's model graph (before batch resolution and autodiff).
    pub fn model(&self) -> &Graph {
        &self.model
    }

    /// The compiled per-device graph (resolved and differentiated).
    /// The device layout: stages, replicas, tensor-parallel width, micro-batches.
    pub fn layout(&self) -> &super::layout::Layout {
        &self.layout
    }

    pub fn compiled(&self) -> &Graph {
        &self.compiled
    }

    pub(super) fn param_count(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, d)| d.iter().product::<usize>())
            .sum()
    }
}

/// A host tensor's f32 values (parameters and optimizer state are f32).
fn f32_of<'a>(data: &'a HostData, name: &str) -> Result<&'a [f32]> {
    data.as_f32()
        .ok_or_else(|| Error::internal(format!("'{name}': expected an f32 buffer")))
}
