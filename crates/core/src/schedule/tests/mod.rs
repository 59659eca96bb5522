//! Schedule tests: golden grids (one fixture file per case), exhaustive properties over small
//! S and M, the text form, and rejected schedules.

mod errors;
mod golden;
mod properties;
mod text;

use super::{Schedule, gpipe, interleaved, one_f_one_b, one_f_one_b_extra_warmup};
use crate::Result;

/// A one-stage-per-rank generator: (stages, micro-batches) -> compute-only schedule.
type Linear = fn(usize, usize) -> Result<Schedule>;

/// The linear generators under their report names.
const LINEAR: [(&str, Linear); 3] = [
    ("gpipe", gpipe),
    ("one_f_one_b", one_f_one_b),
    ("one_f_one_b_extra_warmup", one_f_one_b_extra_warmup),
];

/// Every generator at small sizes, compute-only, with a name for failure messages.
fn all_small() -> Vec<(String, Schedule)> {
    let mut out = Vec::new();
    for (name, generate) in LINEAR {
        for s in 1..=6 {
            for m in 1..=10 {
                out.push((format!("{name}({s}, {m})"), generate(s, m).unwrap()));
            }
        }
    }
    for r in 1..=6 {
        for v in 1..=3 {
            for m in (r..=10).step_by(r) {
                out.push((
                    format!("interleaved({r}, {v}, {m})"),
                    interleaved(r, v, m).unwrap(),
                ));
            }
        }
    }
    out
}
