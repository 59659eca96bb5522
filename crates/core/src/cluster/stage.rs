//! What one pipeline stage costs on one rank for one micro-batch: its layers' `LayerCost`s
//! summed, and the roofline durations of its forward and backward (matmul FLOPs at the kind's
//! peak times the matmul efficiency, memory-bound bytes at its bandwidth times the memory
//! efficiency) plus the tensor-parallel all-reduces inside them.

use super::collective::{Collective, time};
use super::hardware::Hardware;
use super::layout::{Links, Resolved};
use super::model::{LayerCost, ModelShape};
use crate::error::Result;

/// One stage on one rank, one micro-batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageCost {
    pub cost: LayerCost,
    /// The largest single layer (a recomputed layer's activations, a ZeRO-3 gather).
    pub largest: LayerCost,
    /// Seconds of compute in forward and backward (backward includes the recompute forward).
    pub compute_fwd: f64,
    pub compute_bwd: f64,
    /// Seconds of tensor-parallel all-reduce in forward and backward.
    pub comm_fwd: f64,
    pub comm_bwd: f64,
}

fn add(a: LayerCost, b: LayerCost) -> LayerCost {
    LayerCost {
        flops: a.flops + b.flops,
        mem_bytes: a.mem_bytes + b.mem_bytes,
        params: a.params + b.params,
        act_saved: a.act_saved + b.act_saved,
        act_input: a.act_input + b.act_input,
        tp_reduces: a.tp_reduces + b.tp_reduces,
        // Every all-reduce of a GPT stage moves the same [s, b, h] activation.
        tp_bytes: a.tp_bytes.max(b.tp_bytes),
    }
}

/// Every stage of the layout, in stage order.
pub fn stage_costs(
    model: &ModelShape,
    r: &Resolved,
    hw: &Hardware,
    links: &Links,
) -> Result<Vec<StageCost>> {
    let (tp, b, p) = (
        r.layout.tp,
        r.layout.micro_batch as f64,
        r.precision.bytes(),
    );
    let peak = hw.peak(r.precision)?;
    let eff = hw.efficiency;
    let last = r.stages - 1;
    let stages = r.stage_layers.iter().enumerate().map(|(s, layers)| {
        let mut parts: Vec<LayerCost> = layers.clone().map(|i| model.layer(i, b, tp, p)).collect();
        if s == 0 {
            parts.push(model.embedding(b, tp, p));
        }
        if s == last {
            parts.push(model.head(b, tp, p, r.stages > 1));
        }
        let cost = parts.iter().copied().fold(LayerCost::default(), add);
        let largest = parts
            .iter()
            .copied()
            .max_by(|x, y| x.params.total_cmp(&y.params))
            .unwrap_or_default();
        let compute =
            cost.flops / (peak * eff.matmul) + cost.mem_bytes / (hw.memory_bandwidth * eff.memory);
        let reduce = time(
            Collective::AllReduce,
            cost.tp_bytes,
            tp,
            links.tp,
            eff.network,
        );
        let comm = cost.tp_reduces * reduce;
        let again = if r.layout.recompute { 1.0 } else { 0.0 };
        StageCost {
            cost,
            largest,
            compute_fwd: compute,
            compute_bwd: (2.0 + again) * compute,
            comm_fwd: comm,
            comm_bwd: (1.0 + again) * comm,
        }
    });
    Ok(stages.collect())
}
