//! Step time from the lowered per-rank schedule (the action lists the runtime executes),
//! simulated by `schedule::simulate` with roofline durations per stage, the pipeline transfer
//! over the link the stages span, and the epilogue each rank runs: the data-parallel gradient
//! reduction (bucketed, so all but the last bucket hide behind the last backward, as the
//! runtime's reducer does), ZeRO's all-gathers and the optimizer update. The bubble is the idle
//! time the simulation shows, not the closed form.

use super::collective::{Collective, time};
use super::hardware::Hardware;
use super::layout::{Links, Resolved};
use super::memory::bucket_bytes;
use super::stage::StageCost;
use crate::error::Result;
use crate::schedule::{Action, Costs, Schedule, timeline};
use serde::Serialize;

const NS: f64 = 1e9;
const F32: f64 = 4.0;

/// Where one rank's step time goes, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepTime {
    pub pipeline_rank: usize,
    pub step_s: f64,
    pub compute_s: f64,
    /// Tensor-parallel all-reduces, the exposed part of the gradient reduction, ZeRO gathers.
    pub exposed_comm_s: f64,
    /// Idle time the simulated schedule shows (waiting on other stages and transfers).
    pub bubble_s: f64,
    pub optimizer_s: f64,
}

/// The data-parallel epilogue of a stage: (exposed reduction + gathers, optimizer update).
fn epilogue(s: &StageCost, r: &Resolved, hw: &Hardware, links: &Links) -> (f64, f64) {
    let (dp, net) = (r.dp, hw.efficiency.network);
    let grads = F32 * s.cost.params;
    let reduce = match r.zero.shards_grads() {
        true => time(Collective::ReduceScatter, grads, dp, links.dp, net),
        false => time(Collective::AllReduce, grads, dp, links.dp, net),
    };
    let hidden = s.compute_bwd + s.comm_bwd;
    let last_bucket = if grads > 0.0 {
        bucket_bytes(grads) / grads
    } else {
        0.0
    };
    let exposed = (reduce - hidden * (1.0 - last_bucket)).max(reduce * last_bucket);
    let gather = match r.zero {
        crate::config::ZeroLevel::Off | crate::config::ZeroLevel::V2 => 0.0,
        _ => time(Collective::AllGather, grads, dp, links.dp, net),
    };
    let owned = s.cost.params
        / if r.zero == crate::config::ZeroLevel::Off {
            1.0
        } else {
            dp as f64
        };
    // Read and write parameter, gradient and states once each.
    let bytes = 2.0 * F32 * owned * (2.0 + r.optimizer_states);
    let update = bytes / (hw.memory_bandwidth * hw.efficiency.memory);
    (exposed + gather, update)
}

/// ZeRO-3's gather of a stage's parameters before its forward and its backward, prefetched
/// layer by layer: only what exceeds the compute it overlaps is exposed.
fn zero3_gather(s: &StageCost, r: &Resolved, hw: &Hardware, links: &Links) -> (f64, f64) {
    if !r.zero.shards_params() {
        return (0.0, 0.0);
    }
    let g = time(
        Collective::AllGather,
        F32 * s.cost.params,
        r.dp,
        links.dp,
        hw.efficiency.network,
    );
    ((g - s.compute_fwd).max(0.0), (g - s.compute_bwd).max(0.0))
}

/// Simulate one replica's step; one `StepTime` per pipeline rank.
pub fn simulate_step(
    schedule: &Schedule,
    stages: &[StageCost],
    r: &Resolved,
    hw: &Hardware,
    links: &Links,
) -> Result<Vec<StepTime>> {
    let ns = |s: f64| (s * NS).round() as u64;
    let gathers: Vec<(f64, f64)> = stages
        .iter()
        .map(|s| zero3_gather(s, r, hw, links))
        .collect();
    let fwd = |i: usize| stages[i].compute_fwd + stages[i].comm_fwd + gathers[i].0;
    let bwd = |i: usize| stages[i].compute_bwd + stages[i].comm_bwd + gathers[i].1;
    let ends: Vec<(f64, f64)> = stages.iter().map(|s| epilogue(s, r, hw, links)).collect();
    let worst = |f: fn(&(f64, f64)) -> f64| ends.iter().map(f).fold(0.0, f64::max);
    // One layer's input crosses a stage boundary; Megatron's scatter-gather sends 1/tp of it
    // from each tp rank.
    let p2p = stages[0].largest.act_input / r.layout.tp as f64;
    let costs = Costs {
        forward: (0..stages.len()).map(|i| ns(fwd(i))).collect(),
        backward: (0..stages.len()).map(|i| ns(bwd(i))).collect(),
        transfer: ns(time(
            Collective::SendRecv,
            p2p,
            2,
            links.pp,
            hw.efficiency.network,
        )),
        reduce: ns(worst(|e| e.0)),
        optimizer: ns(worst(|e| e.1)),
    };
    let t = timeline(schedule, &costs)?;
    let step = t.makespan() as f64 / NS;
    let per_rank = (0..schedule.ranks).map(|rank| {
        let mut st = StepTime {
            pipeline_rank: rank,
            step_s: step,
            exposed_comm_s: costs.reduce as f64 / NS,
            optimizer_s: costs.optimizer as f64 / NS,
            ..StepTime::default()
        };
        for span in &t.spans[rank] {
            let (comp, all) = match schedule.programs[rank][span.index] {
                Action::Forward { stage, .. } => {
                    (stages[stage.index()].compute_fwd, fwd(stage.index()))
                }
                Action::Backward { stage, .. } => {
                    (stages[stage.index()].compute_bwd, bwd(stage.index()))
                }
                _ => continue,
            };
            st.compute_s += comp;
            st.exposed_comm_s += all - comp;
        }
        let busy = st.compute_s + st.exposed_comm_s + st.optimizer_s;
        st.bubble_s = (step - busy).max(0.0);
        st
    });
    Ok(per_rank.collect())
}
