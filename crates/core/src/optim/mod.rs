//! Optimizer settings and the math around the per-element update kernels (which live in the
//! backends): learning-rate schedules, gradient-norm clipping, PyTorch's defaults and checks.

mod clip;
mod json;
mod options;
mod schedule;

pub use clip::{clip_coefficient, total_norm};
pub use options::{OptimizerConfig, OptimizerKind, ScheduleKind};
pub use schedule::LrSchedule;
