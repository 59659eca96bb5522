//! Cluster planning (issue 22): what a layout of a model needs and delivers on a cluster weft
//! cannot create, from shapes alone (no tensor is allocated).
//!
//! - `hardware`: device kinds as data (`hardware.json`), user overrides, efficiency factors.
//! - `spec`: `NODESxGPUS:KIND[+...]`, parsed against the table.
//! - `collective`: NCCL's ring/tree cost formulas and the link a group spans.
//! - `model`: the built-in GPT and MLP as sizes; one layer's FLOPs, bytes, parameters.
//! - `layout`: tensor x pipeline x data sizes, schedule, ZeRO, recompute; group placement.
//! - `stage`: a pipeline stage's roofline durations.
//! - `memory`: per-device memory by category against capacity.
//! - `step`: the step simulated over the lowered per-rank schedule.
//! - `plan`: the whole report.

mod collective;
mod hardware;
mod layout;
mod memory;
mod model;
mod plan;
mod spec;
mod stage;
mod step;

#[cfg(test)]
mod tests;

pub use collective::{Collective, group_link, time as collective_time};
pub use hardware::{Efficiency, Hardware, HardwareTable, Link, PeakFlops, Precision};
pub use layout::{PlanLayout, Resolved, split_layers};
pub use memory::DeviceMemory;
pub use model::{LayerCost, ModelShape};
pub use plan::{ClusterPlan, LayoutReport, plan, plan_json};
pub use spec::{ClusterSpec, NodeGroup};
pub use step::StepTime;
