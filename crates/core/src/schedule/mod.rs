//! Pipeline schedules as values: generate -> lower -> validate -> execute.
//!
//! A schedule is one action list per pipeline rank (`F0.3`, `B0.3`, `SA0.3>1`, `RG1.2<1`, `RED`,
//! `OPT`). Generators emit compute only (GPipe, 1F1B, 1F1B with extra warm-up, interleaved 1F1B);
//! `lower` adds the sends and receives; `validate` simulates the result to prove it complete and
//! deadlock-free; `render_grid` and `simulate` show the device x time picture and its idle time. The
//! executor interprets the action lists; there is no second, imperative copy of any schedule.

mod action;
mod format;
mod gpipe;
mod ids;
mod interleaved;
mod lower;
mod one_f_one_b;
mod program;
mod simulate;
mod validate;

#[cfg(test)]
mod tests;

pub use action::{Action, Payload, Transfer};
pub use format::{render, render_grid};
pub use gpipe::gpipe;
pub use ids::{MicroBatch, Rank, StageId};
pub use interleaved::interleaved;
pub use lower::lower;
pub use one_f_one_b::{one_f_one_b, one_f_one_b_extra_warmup};
pub use program::Schedule;
pub use simulate::{
    Costs, Deadlock, Span, Timeline, Utilization, ideal_idle_fraction, max_in_flight, simulate,
    timeline,
};
pub use validate::validate;
