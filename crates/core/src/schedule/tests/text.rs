//! The text form: actions and whole schedules print and parse back to the same value.

use super::super::{Action, MicroBatch, Rank, Schedule, StageId, lower};
use super::all_small;

#[test]
fn every_action_round_trips_through_text() {
    let (stage, mb) = (StageId(12), MicroBatch(3));
    let cases = [
        (Action::Forward { stage, mb }, "F12.3"),
        (Action::Backward { stage, mb }, "B12.3"),
        (
            Action::SendActivation {
                stage,
                mb,
                to: Rank(1),
            },
            "SA12.3>1",
        ),
        (
            Action::RecvActivation {
                stage,
                mb,
                from: Rank(0),
            },
            "RA12.3<0",
        ),
        (
            Action::SendGrad {
                stage,
                mb,
                to: Rank(7),
            },
            "SG12.3>7",
        ),
        (
            Action::RecvGrad {
                stage,
                mb,
                from: Rank(10),
            },
            "RG12.3<10",
        ),
        (Action::ReduceGrads, "RED"),
        (Action::OptimizerStep, "OPT"),
    ];
    for (action, text) in cases {
        assert_eq!(action.to_string(), text);
        assert_eq!(text.parse::<Action>().unwrap(), action);
    }
}

#[test]
fn malformed_actions_are_rejected() {
    for bad in [
        "", "F", "F1", "F1.", "F.1", "F1.2.3", "F+1.2", "F1.2>3", "SA1.2", "SA1.2<3", "RA1.2>3",
        "RG1.2<", "X1.2", "RED1", "red", "f1.2", " F1.2",
    ] {
        let err = bad.parse::<Action>().unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{bad}`")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn schedules_round_trip_through_text() {
    for (name, schedule) in all_small() {
        for s in [schedule.clone(), lower(&schedule).unwrap()] {
            let text = s.to_string();
            let back: Schedule = text
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(back, s, "{name}");
        }
    }
}

#[test]
fn the_text_form_is_the_documented_one() {
    let text = lower(&super::super::one_f_one_b(2, 2).unwrap())
        .unwrap()
        .to_string();
    assert_eq!(
        text,
        "schedule ranks=2 stages=2 micro_batches=2 stage_to_rank=0,1\n\
         rank 0: F0.0 SA0.0>1 F0.1 SA0.1>1 RG1.0<1 B0.0 RG1.1<1 B0.1 RED OPT\n\
         rank 1: RA0.0<0 F1.0 B1.0 SG1.0>0 RA0.1<0 F1.1 B1.1 SG1.1>0 RED OPT\n"
    );
}

#[test]
fn malformed_schedule_text_is_rejected() {
    let header = "schedule ranks=2 stages=2 micro_batches=1 stage_to_rank=0,1";
    for bad in [
        String::new(),
        "ranks=2".to_string(),
        format!("{header}\nrank 0: F0.0"),
        format!("{header}\nrank 1: F0.0\nrank 0: F1.0"),
        format!("{header}\nrank 0: F0.0\nrank 1: F1.0 Q"),
        "schedule ranks=1 stages=2 micro_batches=1 stage_to_rank=0,1\nrank 0:".to_string(),
        "schedule ranks=2 stages=2 micro_batches=1 stage_to_rank=0\nrank 0:\nrank 1:".to_string(),
    ] {
        assert!(bad.parse::<Schedule>().is_err(), "accepted:\n{bad}");
    }
}
