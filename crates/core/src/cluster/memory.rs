//! Per-device memory by category, as the runtime holds it: parameters, gradients and Adam's two
//! states in f32 (16-bit copies are cast just in time), ZeRO's shards (v0: optimizer state,
//! v1: + gradients when there is no accumulation, v2: + parameters, two layers gathered at a
//! time), activations of the micro-batches in flight on the rank (from its schedule), and the
//! communication buffers (one fused gradient bucket, the tensor-parallel and pipeline
//! activations in transit).

use super::layout::Resolved;
use super::stage::StageCost;
use crate::resource::human_bytes;
use serde::Serialize;

/// The runtime's default gradient bucket: `communication.bucket_size_mb` (4 MiB), grown so there
/// are at most `communication.max_splits` (5) buckets, never more than all the gradients.
pub fn bucket_bytes(grad_bytes: f64) -> f64 {
    (4.0 * (1u64 << 20) as f64)
        .max(grad_bytes / 5.0)
        .min(grad_bytes)
}
const F32: f64 = 4.0;

/// One pipeline rank's peak bytes (every data- and tensor-parallel copy of it alike).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceMemory {
    pub pipeline_rank: usize,
    pub params: f64,
    pub grads: f64,
    pub optimizer_state: f64,
    /// The setting planned: with recompute or without.
    pub activations: f64,
    pub activations_without_recompute: f64,
    pub activations_with_recompute: f64,
    pub comm_buffers: f64,
    pub total: f64,
    pub capacity: f64,
    pub fits: bool,
}

impl DeviceMemory {
    /// `params 12.0 GiB` for the categories over `capacity`'s share, largest first.
    pub fn categories(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("parameters", self.params),
            ("gradients", self.grads),
            ("optimizer state", self.optimizer_state),
            ("activations", self.activations),
            ("communication buffers", self.comm_buffers),
        ];
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// Why it does not fit: `rank 0 needs 95.1 GiB > 80.0 GiB (optimizer state 40.2 GiB, ...)`.
    pub fn overflow(&self) -> Option<String> {
        if self.fits {
            return None;
        }
        let parts: Vec<String> = self
            .categories()
            .iter()
            .take(3)
            .map(|(n, b)| format!("{n} {}", human_bytes(*b as u128)))
            .collect();
        Some(format!(
            "pipeline rank {} needs {} > capacity {} ({})",
            self.pipeline_rank,
            human_bytes(self.total as u128),
            human_bytes(self.capacity as u128),
            parts.join(", ")
        ))
    }
}

/// Rank `rank`'s memory hosting `stages` with `in_flight` micro-batches alive at its peak.
pub fn device_memory(
    r: &Resolved,
    rank: usize,
    stages: &[&StageCost],
    in_flight: usize,
    capacity: f64,
) -> DeviceMemory {
    let dp = r.dp as f64;
    let params: f64 = stages.iter().map(|s| s.cost.params).sum();
    let largest = stages.iter().map(|s| s.largest.params).fold(0.0, f64::max);
    let zero = r.zero;
    let accumulates = r.micro_batches > 1;
    let resident = if zero.shards_params() {
        params / dp
    } else {
        params
    };
    let gathered = if zero.shards_params() {
        2.0 * largest
    } else {
        0.0
    };
    let grads = if zero.shards_grads() && !accumulates {
        params / dp
    } else {
        params
    };
    let state = params * r.optimizer_states
        / if zero == crate::config::ZeroLevel::Off {
            1.0
        } else {
            dp
        };
    let per_stage = |f: fn(&StageCost) -> f64| stages.iter().map(|s| f(s)).fold(0.0, f64::max);
    let saved = per_stage(|s| s.cost.act_saved);
    let input = per_stage(|s| s.cost.act_input);
    let layer = per_stage(|s| s.largest.act_saved);
    let n = in_flight as f64;
    let without = n * saved;
    let with = n * input + layer;
    let activations = if r.layout.recompute { with } else { without };
    let bucket = if r.dp > 1 {
        bucket_bytes(F32 * grads)
    } else {
        0.0
    };
    let tp = per_stage(|s| s.cost.tp_bytes) * if r.layout.tp > 1 { 2.0 } else { 0.0 };
    let p2p = if r.layout.pp > 1 {
        2.0 * per_stage(|s| s.largest.act_input)
    } else {
        0.0
    };
    let comm_buffers = bucket + tp + p2p;
    let mut m = DeviceMemory {
        pipeline_rank: rank,
        params: F32 * (resident + gathered),
        grads: F32 * grads,
        optimizer_state: F32 * state,
        activations,
        activations_without_recompute: without,
        activations_with_recompute: with,
        comm_buffers,
        capacity,
        ..DeviceMemory::default()
    };
    m.total = m.params + m.grads + m.optimizer_state + m.activations + m.comm_buffers;
    m.fits = m.total <= capacity;
    m
}
