//! Rejected schedules: each error names the problem and carries the grid.

use super::super::{Costs, Schedule, gpipe, lower, one_f_one_b, render_grid, simulate, validate};
use crate::Error;

/// 1F1B S=2 M=4 lowered, except rank 1 runs F1.3 before B1.2 while rank 0 waits for B1.2's
/// gradient before it sends micro-batch 3: a cycle.
pub(super) fn deadlocked() -> Schedule {
    "schedule ranks=2 stages=2 micro_batches=4 stage_to_rank=0,1
rank 0: F0.0 SA0.0>1 F0.1 SA0.1>1 RG1.0<1 B0.0 F0.2 SA0.2>1 RG1.1<1 B0.1 RG1.2<1 B0.2 F0.3 SA0.3>1 RG1.3<1 B0.3 RED OPT
rank 1: RA0.0<0 F1.0 B1.0 SG1.0>0 RA0.1<0 F1.1 B1.1 SG1.1>0 RA0.2<0 F1.2 RA0.3<0 F1.3 B1.2 SG1.2>0 B1.3 SG1.3>0 RED OPT"
        .parse()
        .unwrap()
}

fn verify_message(schedule: &Schedule) -> String {
    match validate(schedule) {
        Err(Error::Verify { message }) => message,
        other => panic!("expected a verify error, got {other:?}\n{schedule}"),
    }
}

#[test]
fn a_deadlocking_schedule_is_rejected_with_who_waits_on_what() {
    let message = verify_message(&deadlocked());
    let first = message.lines().next().unwrap();
    assert_eq!(
        first,
        "pipeline schedule: deadlock at time 9: rank 0 waits on RG1.2<1, rank 1 waits on RA0.3<0"
    );
    assert!(
        message.contains("rank 0 | F0 F1 .  .  B0 -- F2 B1 --  <- waits on RG1.2<1"),
        "{message}"
    );
    assert!(message.contains("<- waits on RA0.3<0"), "{message}");
    assert!(simulate(&deadlocked(), &Costs::unit(2)).is_err());
}

/// Remove the first action with this text from `schedule`'s text form and parse the result.
fn without(schedule: &Schedule, action: &str) -> Schedule {
    let text = schedule.to_string().replacen(&format!(" {action}"), "", 1);
    text.parse().unwrap()
}

#[test]
fn a_missing_receive_deadlocks_and_names_the_unpaired_send() {
    let broken = without(&lower(&one_f_one_b(2, 3).unwrap()).unwrap(), "RA0.1<0");
    let message = verify_message(&broken);
    assert!(message.contains("rank 1 waits on F1.1"), "{message}");
    assert!(
        message.contains("SA0.1>1 on rank 0 runs 1 time(s) but RA0.1<0 on rank 1 runs 0 time(s)"),
        "{message}"
    );
}

#[test]
fn a_missing_backward_is_reported_without_a_deadlock() {
    let broken = without(&gpipe(1, 3).unwrap(), "B0.2");
    let message = verify_message(&broken);
    assert!(
        message.starts_with("pipeline schedule: 1 problem(s)"),
        "{message}"
    );
    assert!(message.contains("stage 0 micro-batch 2 has 1 forward(s) and 0 backward(s)"));
}

#[test]
fn a_duplicated_forward_is_reported() {
    let text = gpipe(1, 2)
        .unwrap()
        .to_string()
        .replace("F0.1", "F0.1 F0.1");
    let message = verify_message(&text.parse().unwrap());
    assert!(
        message.contains("stage 0 micro-batch 1 has 2 forward(s)"),
        "{message}"
    );
}

#[test]
fn compute_on_the_wrong_rank_is_reported() {
    let text = lower(&gpipe(2, 1).unwrap())
        .unwrap()
        .to_string()
        .replace("stage_to_rank=0,1", "stage_to_rank=1,0");
    let message = verify_message(&text.parse().unwrap());
    assert!(
        message.contains("rank 0 runs F0.0, but stage 0 lives on rank 1"),
        "{message}"
    );
}

#[test]
fn reducing_before_the_last_backward_is_reported() {
    let text = gpipe(1, 2)
        .unwrap()
        .to_string()
        .replace("B0.1 RED", "RED B0.1");
    let message = verify_message(&text.parse().unwrap());
    assert!(
        message.contains("rank 0 reduces gradients (RED) before its last backward"),
        "{message}"
    );
}

#[test]
fn an_unlowered_pipeline_is_reported_as_such() {
    let message = verify_message(&gpipe(2, 2).unwrap());
    assert!(message.contains("lower()"), "{message}");
}

#[test]
fn out_of_range_indices_are_rejected_before_simulation() {
    let text = gpipe(2, 1).unwrap().to_string().replace("F1.0", "F5.0");
    let message = verify_message(&text.parse().unwrap());
    assert!(
        message.contains("rank 1 has F5.0, outside S=2 stages"),
        "{message}"
    );
}

#[test]
fn lowering_twice_is_refused() {
    let lowered = lower(&one_f_one_b(2, 2).unwrap()).unwrap();
    assert!(matches!(lower(&lowered), Err(Error::Internal { .. })));
}

#[test]
fn render_grid_lowers_compute_only_schedules() {
    let schedule = one_f_one_b(2, 2).unwrap();
    assert_eq!(
        render_grid(&schedule),
        render_grid(&lower(&schedule).unwrap())
    );
    assert!(!render_grid(&schedule).contains("waits on"));
}
