//! GPipe, EPL's `PreferForward`: every stage runs all forwards, then all backwards.

use super::action::Action;
use super::ids::{MicroBatch, StageId, id32};
use super::program::{Schedule, check_counts, linear};
use crate::Result;

/// GPipe for `stages` stages (one per rank) and `micro_batches` micro-batches: stage s runs
/// F0..F(M-1) then B0..B(M-1). Simple, but every stage holds all M activations at once.
pub fn gpipe(stages: usize, micro_batches: usize) -> Result<Schedule> {
    check_counts("gpipe", stages, micro_batches)?;
    let programs = (0..stages)
        .map(|s| {
            let stage = StageId(id32(s));
            let mbs = || (0..micro_batches).map(|m| MicroBatch(id32(m)));
            let forwards = mbs().map(|mb| Action::Forward { stage, mb });
            let backwards = mbs().map(|mb| Action::Backward { stage, mb });
            forwards.chain(backwards).collect()
        })
        .collect();
    Ok(linear(stages, micro_batches, programs))
}
