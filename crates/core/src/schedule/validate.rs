//! Proof that a lowered schedule is complete and deadlock-free: simulate it (see `simulate`) and
//! check the counts a simulation cannot see (exactly one F and B per stage and micro-batch, one
//! receive per send, placement on the right ranks, the gradient epilogue last).

use super::action::{Action, Payload};
use super::format::render;
use super::ids::{MicroBatch, StageId, id32};
use super::program::Schedule;
use super::simulate::{Costs, Wire, deadlock_line, timeline};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};

/// At most this many structural problems are listed; the rest are counted.
const MAX_LISTED: usize = 12;

/// Check that `schedule` (lowered) runs to completion and does every piece of work exactly once.
/// Failures are `Error::Verify` whose message names the problem (e.g. `deadlock at time 7: rank
/// 0 waits on RG1.2<1, rank 1 waits on RA0.3<0`) followed by the device x time grid.
pub fn validate(schedule: &Schedule) -> Result<()> {
    check_indices(schedule)?;
    let timeline = timeline(schedule, &Costs::unit(schedule.stages))?;
    let mut problems = Vec::new();
    if !schedule.is_lowered() && crosses_ranks(schedule) {
        problems.push(
            "there are no sends or receives although stages span several ranks: lower() the \
             schedule before validating it"
                .to_string(),
        );
    }
    placement(schedule, &mut problems);
    compute_counts(schedule, &mut problems);
    pairing(schedule, &mut problems);
    epilogue(schedule, &mut problems);
    let headline = match &timeline.deadlock {
        Some(deadlock) => deadlock_line(schedule, deadlock),
        None if problems.is_empty() => return Ok(()),
        None => format!("{} problem(s)", problems.len()),
    };
    let mut summary = headline;
    for problem in problems.iter().take(MAX_LISTED) {
        summary.push_str("\n  ");
        summary.push_str(problem);
    }
    if problems.len() > MAX_LISTED {
        summary.push_str(&format!("\n  ... and {} more", problems.len() - MAX_LISTED));
    }
    Err(invalid(&summary, &render(schedule, &timeline)))
}

/// True when some stage's successor lives on another rank, so the schedule needs transfers.
fn crosses_ranks(schedule: &Schedule) -> bool {
    schedule.stage_to_rank.windows(2).any(|w| w[0] != w[1])
}

/// A schedule verification error: the summary, then the grid that shows where it went wrong.
pub(crate) fn invalid(summary: &str, grid: &str) -> Error {
    Error::Verify {
        message: format!("pipeline schedule: {summary}\n{grid}"),
    }
}

/// Every index in range, so the simulator and renderer can index without checks. The grid
/// cannot be drawn for such a schedule, so the error carries the program text instead.
pub(crate) fn check_indices(schedule: &Schedule) -> Result<()> {
    let fail = |what: String| {
        Err(Error::Verify {
            message: format!("pipeline schedule: {what}\n{schedule}"),
        })
    };
    if schedule.programs.len() != schedule.ranks {
        return fail(format!(
            "{} programs for {} ranks",
            schedule.programs.len(),
            schedule.ranks
        ));
    }
    if schedule.stage_to_rank.len() != schedule.stages {
        return fail(format!(
            "stage_to_rank has {} entries for {} stages",
            schedule.stage_to_rank.len(),
            schedule.stages
        ));
    }
    if let Some(r) = schedule
        .stage_to_rank
        .iter()
        .find(|r| r.index() >= schedule.ranks)
    {
        return fail(format!(
            "stage_to_rank names rank {r} of {}",
            schedule.ranks
        ));
    }
    for (rank, action) in schedule.actions() {
        if !indices_in_range(schedule, action) {
            return fail(format!(
                "rank {rank} has {action}, outside S={} stages, M={} micro-batches, {} ranks",
                schedule.stages, schedule.micro_batches, schedule.ranks
            ));
        }
    }
    Ok(())
}

fn indices_in_range(schedule: &Schedule, action: &Action) -> bool {
    let Some((stage, mb)) = action.stage_mb() else {
        return true;
    };
    let peer_ok = action
        .transfer()
        .is_none_or(|t| t.peer.index() < schedule.ranks);
    stage.index() < schedule.stages && mb.index() < schedule.micro_batches && peer_ok
}

/// Compute runs on the stage's rank; a transfer goes from the producing stage's rank to the
/// consuming stage's rank (stage + 1 for activations, stage - 1 for gradients).
fn placement(schedule: &Schedule, problems: &mut Vec<String>) {
    for (rank, action) in schedule.actions() {
        if action.is_compute() {
            let (stage, _) = action
                .stage_mb()
                .expect("internal error: compute has a stage");
            let home = schedule.rank_of(stage);
            if home != rank {
                problems.push(format!(
                    "rank {rank} runs {action}, but stage {stage} lives on rank {home}"
                ));
            }
            continue;
        }
        let Some(t) = action.transfer() else { continue };
        let consumer = match t.payload {
            Payload::Activation => t.stage.0.checked_add(1),
            Payload::Grad => t.stage.0.checked_sub(1),
        }
        .map(StageId)
        .filter(|s| s.index() < schedule.stages);
        let Some(consumer) = consumer else {
            problems.push(format!(
                "rank {rank} has {action}, but no stage consumes it"
            ));
            continue;
        };
        let (sender, receiver) = (schedule.rank_of(t.stage), schedule.rank_of(consumer));
        let (want_here, want_peer) = if t.is_send {
            (sender, receiver)
        } else {
            (receiver, sender)
        };
        if (rank, t.peer) != (want_here, want_peer) || sender == receiver {
            problems.push(format!(
                "rank {rank} has {action}; stage {} -> stage {consumer} is rank {sender} -> rank \
                 {receiver}",
                t.stage
            ));
        }
    }
}

/// Every (stage, micro-batch) has exactly one forward and one backward.
fn compute_counts(schedule: &Schedule, problems: &mut Vec<String>) {
    let mut counts: HashMap<(StageId, MicroBatch), (usize, usize)> = HashMap::new();
    for (_, action) in schedule.actions() {
        match *action {
            Action::Forward { stage, mb } => counts.entry((stage, mb)).or_default().0 += 1,
            Action::Backward { stage, mb } => counts.entry((stage, mb)).or_default().1 += 1,
            _ => {}
        }
    }
    for s in 0..schedule.stages {
        for m in 0..schedule.micro_batches {
            let (stage, mb) = (StageId(id32(s)), MicroBatch(id32(m)));
            let (f, b) = counts.get(&(stage, mb)).copied().unwrap_or_default();
            if (f, b) != (1, 1) {
                problems.push(format!(
                    "stage {stage} micro-batch {mb} has {f} forward(s) and {b} backward(s), \
                     want 1 and 1"
                ));
            }
        }
    }
}

/// Each send pairs with exactly one receive of the same tensor between the same two ranks.
fn pairing(schedule: &Schedule, problems: &mut Vec<String>) {
    // BTreeMap: problems listed in a stable order.
    let mut wires: BTreeMap<Wire, (usize, usize)> = BTreeMap::new();
    for (rank, action) in schedule.actions() {
        let Some(t) = action.transfer() else { continue };
        if t.is_send {
            wires
                .entry((t.payload, t.stage, t.mb, rank, t.peer))
                .or_default()
                .0 += 1;
        } else {
            wires
                .entry((t.payload, t.stage, t.mb, t.peer, rank))
                .or_default()
                .1 += 1;
        }
    }
    for ((payload, stage, mb, from, to), (sends, recvs)) in wires {
        if (sends, recvs) != (1, 1) {
            let (send, recv) = match payload {
                Payload::Activation => ("SA", "RA"),
                Payload::Grad => ("SG", "RG"),
            };
            problems.push(format!(
                "{send}{stage}.{mb}>{to} on rank {from} runs {sends} time(s) but \
                 {recv}{stage}.{mb}<{from} on rank {to} runs {recvs} time(s); want 1 and 1"
            ));
        }
    }
}

/// Each rank reduces its gradients once after its last backward, then steps the optimizer once
/// after all its compute.
fn epilogue(schedule: &Schedule, problems: &mut Vec<String>) {
    for (r, program) in schedule.programs.iter().enumerate() {
        let find = |want: Action| -> Vec<usize> {
            (0..program.len()).filter(|&i| program[i] == want).collect()
        };
        let (reduce, step) = (find(Action::ReduceGrads), find(Action::OptimizerStep));
        if reduce.len() != 1 || step.len() != 1 {
            problems.push(format!(
                "rank {r} has {} RED and {} OPT, want exactly one of each",
                reduce.len(),
                step.len()
            ));
            continue;
        }
        let last_backward = program
            .iter()
            .rposition(|a| matches!(a, Action::Backward { .. }));
        let last_compute = program.iter().rposition(Action::is_compute);
        if last_backward.is_some_and(|b| b > reduce[0]) {
            problems.push(format!(
                "rank {r} reduces gradients (RED) before its last backward"
            ));
        }
        if step[0] < reduce[0] || last_compute.is_some_and(|c| c > step[0]) {
            problems.push(format!(
                "rank {r} steps the optimizer (OPT) before RED or before its last compute"
            ));
        }
    }
}
