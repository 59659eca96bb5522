//! The session layer: compile options, the `Trainer` (compile, step, evaluate), checkpoints of a
//! trainer, and its plan and memory reports. This is the API the binding exposes.

mod amp;
mod batch;
mod compile;
mod cooperative;
mod decode;
mod device;
mod device_reduce;
mod engine;
mod eval;
mod layout;
mod limits;
mod options;
mod overlap;
mod params;
mod persist;
mod plan;
mod processes;
mod report;
mod trace;
mod trainer;
mod zero;

pub use compile::BackendFactory;
pub use device::Work;
pub use engine::Engine;
pub use layout::Layout;
pub use options::{DeviceSpec, TrainerOptions};
pub use plan::MemoryEstimate;
pub use report::StepReport;
pub use trace::{DeviceTrace, Span, chrome_trace, ideal_idle, measured_idle};
pub use trainer::{InputSpec, Trainer};
