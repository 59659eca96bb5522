//! Lowering: insert the point-to-point communication a compute-only schedule implies.
//!
//! Receives go right before the compute that consumes them and block; sends go right after the
//! compute that produced them and are buffered (never block). With that execution model the
//! lowered schedule deadlocks exactly when the compute order itself is inconsistent, which
//! `validate` checks by simulation.

use super::action::Action;
use super::ids::{Rank, StageId, id32};
use super::program::Schedule;
use super::validate::check_indices;
use crate::{Error, Result};

/// Add `RecvActivation`/`SendActivation` around every forward and `RecvGrad`/`SendGrad` around
/// every backward whose neighbouring stage lives on another rank. Errors if `schedule` already
/// has communication (lowering twice would duplicate every transfer).
pub fn lower(schedule: &Schedule) -> Result<Schedule> {
    check_indices(schedule)?;
    if schedule.is_lowered() {
        return Err(Error::internal(
            "lower: the schedule already contains sends/receives; lower a compute-only schedule",
        ));
    }
    let programs = schedule
        .programs
        .iter()
        .enumerate()
        .map(|(r, program)| lower_program(schedule, Rank(id32(r)), program))
        .collect();
    Ok(Schedule {
        programs,
        ..schedule.clone()
    })
}

fn lower_program(schedule: &Schedule, rank: Rank, program: &[Action]) -> Vec<Action> {
    // The neighbour stage's rank, when it is another rank (same-rank neighbours share memory).
    let remote = |stage: StageId, delta: i64| -> Option<Rank> {
        let s = i64::from(stage.0) + delta;
        let neighbour = StageId(u32::try_from(s).ok()?);
        (neighbour.index() < schedule.stages)
            .then(|| schedule.rank_of(neighbour))
            .filter(|&r| r != rank)
    };
    let mut lowered = Vec::with_capacity(program.len() * 3);
    for &action in program {
        match action {
            Action::Forward { stage, mb } => {
                if let Some(from) = remote(stage, -1) {
                    let stage = StageId(stage.0 - 1);
                    lowered.push(Action::RecvActivation { stage, mb, from });
                }
                lowered.push(action);
                if let Some(to) = remote(stage, 1) {
                    lowered.push(Action::SendActivation { stage, mb, to });
                }
            }
            Action::Backward { stage, mb } => {
                if let Some(from) = remote(stage, 1) {
                    let stage = StageId(stage.0 + 1);
                    lowered.push(Action::RecvGrad { stage, mb, from });
                }
                lowered.push(action);
                if let Some(to) = remote(stage, -1) {
                    lowered.push(Action::SendGrad { stage, mb, to });
                }
            }
            other => lowered.push(other),
        }
    }
    lowered
}
