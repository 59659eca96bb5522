//! `plan`: a model's sizes, a cluster and a layout in; per-device memory by category, the
//! simulated step split into compute, exposed communication and bubble, and the run's tokens/s,
//! model FLOP/s per GPU and MFU out. Shapes only: the cost is the schedule's action count.

use super::hardware::HardwareTable;
use super::layout::{Links, PlanLayout, Resolved};
use super::memory::{DeviceMemory, device_memory};
use super::model::ModelShape;
use super::spec::ClusterSpec;
use super::stage::stage_costs;
use super::step::{StepTime, simulate_step};
use crate::error::{Error, Result};
use crate::schedule::{Rank, ideal_idle_fraction, max_in_flight};
use serde::Serialize;

/// The layout as resolved (user's choices plus derived sizes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayoutReport {
    #[serde(flatten)]
    pub chosen: PlanLayout,
    pub dp: usize,
    pub micro_batches: usize,
    pub stages: usize,
}

/// Everything a cluster plan predicts (`weft plan --cluster N×G:KIND --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterPlan {
    pub cluster: String,
    pub hardware: String,
    pub devices: usize,
    pub layout: LayoutReport,
    pub parameters: f64,
    /// One per pipeline rank (every data- and tensor-parallel copy alike).
    pub memory: Vec<DeviceMemory>,
    pub fits: bool,
    /// Why the layout does not fit, one line per rank over capacity.
    pub overflow: Vec<String>,
    /// One per pipeline rank.
    pub step: Vec<StepTime>,
    pub step_s: f64,
    /// The busiest rank's split (the one that bounds the step).
    pub critical: StepTime,
    /// Idle over the step on the critical rank, and the closed form (S-1)/(M+S-1) beside it.
    pub bubble_fraction: f64,
    pub closed_form_bubble: f64,
    pub tokens_per_s: f64,
    /// Model FLOPs (no recompute) per second per GPU, and as a fraction of peak (MFU).
    pub model_flops_per_gpu: f64,
    pub mfu: f64,
    /// Megatron's "TFLOP/s per GPU" (counts the recompute forward when recomputing).
    pub hardware_flops_per_gpu: f64,
}

/// The JSON entry point (binding, CLI): the model and layout as JSON, optional hardware
/// overrides as (JSON text, where it came from); the plan as JSON.
pub fn plan_json(
    model_json: &str,
    cluster_text: &str,
    layout_json: &str,
    hardware: Option<(&str, &str)>,
) -> Result<serde_json::Value> {
    let parse = |what: &str, text: &str| -> Result<serde_json::Value> {
        serde_json::from_str(text).map_err(|e| Error::config(what, format!("{what}: {e}")))
    };
    let model: ModelShape = serde_json::from_value(parse("model", model_json)?)
        .map_err(|e| Error::config("model", format!("model: {e}")))?;
    let layout: PlanLayout = serde_json::from_value(parse("layout", layout_json)?)
        .map_err(|e| Error::config("layout", format!("layout: {e}")))?;
    let table = match hardware {
        Some((text, source)) => HardwareTable::with_overrides(text, source)?,
        None => HardwareTable::built_in()?,
    };
    let p = plan(&model, cluster_text, &layout, &table)?;
    serde_json::to_value(&p).map_err(|e| Error::internal(format!("plan JSON: {e}")))
}

/// Plan `model` on `cluster_text` (`NODESxGPUS:KIND`) with `layout`.
pub fn plan(
    model: &ModelShape,
    cluster_text: &str,
    layout: &PlanLayout,
    table: &HardwareTable,
) -> Result<ClusterPlan> {
    let cluster = ClusterSpec::parse(cluster_text, table)?;
    let hw = cluster.homogeneous()?;
    let r = Resolved::new(layout, model, cluster.devices())?;
    let links = Links::new(&r, &cluster)?;
    let stages = stage_costs(model, &r, hw, &links)?;
    let schedule = r.schedule()?;
    let memory: Vec<DeviceMemory> = (0..r.layout.pp)
        .map(|rank| {
            let hosted = schedule.stages_on(Rank(rank as u32));
            let mine: Vec<_> = hosted.iter().map(|s| &stages[s.index()]).collect();
            let in_flight = max_in_flight(&schedule, Rank(rank as u32));
            device_memory(&r, rank, &mine, in_flight, hw.memory_bytes)
        })
        .collect();
    let step = simulate_step(&schedule, &stages, &r, hw, &links)?;
    let critical = step
        .iter()
        .min_by(|a, b| a.bubble_s.total_cmp(&b.bubble_s))
        .cloned()
        .unwrap_or_default();
    let t = critical.step_s;
    let n = cluster.devices() as f64;
    let rows = layout.global_batch as f64;
    let model_flops = model.step_flops(rows, false) / t / n;
    Ok(ClusterPlan {
        cluster: cluster.text.clone(),
        hardware: hw.name.clone(),
        devices: cluster.devices(),
        layout: LayoutReport {
            chosen: layout.clone(),
            dp: r.dp,
            micro_batches: r.micro_batches,
            stages: r.stages,
        },
        parameters: model.parameters(),
        fits: memory.iter().all(|m| m.fits),
        overflow: memory.iter().filter_map(DeviceMemory::overflow).collect(),
        memory,
        bubble_fraction: critical.bubble_s / t,
        closed_form_bubble: ideal_idle_fraction(r.stages, r.micro_batches),
        step_s: t,
        tokens_per_s: rows * model.tokens_per_row() / t,
        model_flops_per_gpu: model_flops,
        mfu: model_flops / hw.peak(r.precision)?,
        hardware_flops_per_gpu: model.step_flops(rows, r.layout.recompute) / t / n,
        critical,
        step,
    })
}
