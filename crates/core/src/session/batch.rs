//! A step's batch in and its results out: checking a global batch against the compiled
//! inputs, cutting it into each replica's micro-batches, and merging the devices' losses and
//! outputs back into batch-row order.

use super::device::DeviceResult;
use super::trainer::Trainer;
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::{AsHostView, HostData, HostView};
use std::collections::BTreeMap;

/// A global batch as the step reads it: input name -> borrowed data.
pub(super) type Batch<'a> = BTreeMap<&'a str, HostView<'a>>;

pub(super) fn views<D: AsHostView>(batch: &BTreeMap<String, D>) -> Batch<'_> {
    batch.iter().map(|(k, v)| (k.as_str(), v.view())).collect()
}

impl<B: Backend> Trainer<B> {
    /// Check names, dtypes and sizes of a global batch before anything runs.
    pub(super) fn check_batch(&self, batch: &Batch<'_>) -> Result<()> {
        for name in batch.keys() {
            if !self.inputs.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::batch(format!(
                    "unknown input '{name}'; the model's inputs are {known:?}"
                )));
            }
        }
        for s in &self.inputs {
            let data = batch
                .get(s.name.as_str())
                .ok_or_else(|| Error::batch(format!("missing input '{}'", s.name)))?;
            let len: usize = s.dims.iter().product();
            if data.dtype() != s.dtype {
                return Err(Error::DType {
                    what: format!("input '{}'", s.name),
                    expected: s.dtype.to_string(),
                    got: data.dtype().to_string(),
                });
            }
            if data.len() != len {
                return Err(Error::batch(format!(
                    "input '{}' must have shape {:?} ({len} elements) for global batch {}, got {} elements",
                    s.name,
                    s.dims,
                    self.options.batch,
                    data.len()
                )));
            }
        }
        Ok(())
    }

    /// Chunk `c` of every batched input: replica r, micro-batch m is chunk r*M + m (DESIGN.md).
    pub(super) fn chunk<'a>(&self, batch: &Batch<'a>, c: usize) -> BTreeMap<String, HostView<'a>> {
        let parts = self.layout.replicas * self.layout.micro_batches;
        let mut out = BTreeMap::new();
        for s in &self.inputs {
            let data = batch[s.name.as_str()];
            let range = if s.batched {
                let len = data.len() / parts;
                c * len..(c + 1) * len
            } else {
                0..data.len()
            };
            out.insert(s.name.clone(), data.slice(range));
        }
        out
    }

    /// Mean loss over replicas and micro-batches; outputs concatenated in batch-row order.
    /// Tensor-parallel devices other than the first hold the same loss and outputs: skipped.
    pub(super) fn merge(
        &self,
        results: &[DeviceResult],
    ) -> (f32, Vec<(String, Vec<usize>, HostData)>) {
        let losses: Vec<f32> = results
            .iter()
            .zip(&self.devices)
            .filter(|(_, d)| d.tp_rank == 0)
            .map(|(r, _)| r)
            .flat_map(|r| r.losses.iter().copied())
            .collect();
        let loss = mean_loss(&losses);
        let mut merged: Vec<(String, Vec<usize>, HostData)> = Vec::new();
        for (name, id) in &self.compiled.outputs {
            let mut dims = self.compiled.node(*id).shape.to_vec();
            let mut parts: Vec<(usize, usize, &HostData)> = Vec::new();
            for (d, r) in self.devices.iter().zip(results) {
                if d.tp_rank != 0 {
                    continue;
                }
                for (mb, n, data) in &r.outputs {
                    if n == name {
                        parts.push((d.replica, *mb, data));
                    }
                }
            }
            parts.sort_by_key(|(r, m, _)| (*r, *m));
            if let Some(first) = dims.first_mut() {
                *first *= parts.len().max(1);
            }
            let data = match parts.first().map(|p| p.2) {
                Some(HostData::I32(_)) => HostData::I32(
                    parts
                        .iter()
                        .flat_map(|p| p.2.as_i32().unwrap_or(&[]).to_vec())
                        .collect(),
                ),
                _ => HostData::F32(
                    parts
                        .iter()
                        .flat_map(|p| p.2.as_f32().unwrap_or(&[]).to_vec())
                        .collect(),
                ),
            };
            merged.push((name.clone(), dims, data));
        }
        (loss, merged)
    }
}

/// The step's loss: the mean of every micro-batch's, summed in f64 in device order (so one
/// process and several agree bit for bit).
pub(super) fn mean_loss(losses: &[f32]) -> f32 {
    (losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len().max(1) as f64) as f32
}
