//! Exhaustive properties over S in 1..=6, M in 1..=10 (interleaved: ranks 1..=6, V 1..=3, M a
//! multiple of the ranks up to 10).

use super::super::{
    Action, Costs, MicroBatch, Rank, Schedule, StageId, ideal_idle_fraction, interleaved, lower,
    max_in_flight, simulate, timeline, validate,
};
use super::{LINEAR, all_small};
use crate::Error;

/// Position of `action` in `rank`'s program.
fn position(schedule: &Schedule, rank: Rank, action: Action) -> Option<usize> {
    schedule.programs[rank.index()]
        .iter()
        .position(|&a| a == action)
}

#[test]
fn every_generated_schedule_lowers_and_validates() {
    for (name, schedule) in all_small() {
        assert!(
            !schedule.is_lowered(),
            "{name}: generators emit compute only"
        );
        let lowered = lower(&schedule).unwrap();
        if let Err(e) = validate(&lowered) {
            panic!("{name}: {e}");
        }
        for program in &lowered.programs {
            let tail = &program[program.len() - 2..];
            assert_eq!(tail, [Action::ReduceGrads, Action::OptimizerStep], "{name}");
        }
    }
}

#[test]
fn forward_precedes_backward_on_the_stage_rank() {
    for (name, schedule) in all_small() {
        for s in 0..schedule.stages {
            for m in 0..schedule.micro_batches {
                let (stage, mb) = (StageId(s as u32), MicroBatch(m as u32));
                let rank = schedule.rank_of(stage);
                let f = position(&schedule, rank, Action::Forward { stage, mb });
                let b = position(&schedule, rank, Action::Backward { stage, mb });
                assert!(
                    matches!((f, b), (Some(f), Some(b)) if f < b),
                    "{name}: F{s}.{m} at {f:?}, B{s}.{m} at {b:?} on rank {rank}"
                );
            }
        }
    }
}

/// Simulated spans on one rank never overlap and follow program order.
#[test]
fn timelines_are_sequential_per_rank() {
    for (name, schedule) in all_small() {
        let lowered = lower(&schedule).unwrap();
        let t = timeline(&lowered, &Costs::uniform(lowered.stages, 2, 3)).unwrap();
        assert!(t.deadlock.is_none(), "{name}");
        for spans in &t.spans {
            for pair in spans.windows(2) {
                assert!(
                    pair[0].end <= pair[1].start && pair[0].index < pair[1].index,
                    "{name}"
                );
            }
        }
    }
}

/// The activation-memory bound: how many forwards each rank runs ahead of its backwards.
#[test]
fn in_flight_forwards_match_each_generators_warmup() {
    for (name, generate) in LINEAR {
        for stages in 1..=6 {
            for m in 1..=10 {
                let schedule = generate(stages, m).unwrap();
                for s in 0..stages {
                    let want = match name {
                        "gpipe" => m,
                        "one_f_one_b" => (stages - s).min(m),
                        _ if s + 1 == stages => 1,
                        _ => (stages - s + 1).min(m),
                    };
                    let got = max_in_flight(&schedule, Rank(s as u32));
                    assert_eq!(got, want, "{name}({stages}, {m}) stage {s}");
                }
            }
        }
    }
}

#[test]
fn interleaved_in_flight_is_megatrons_warmup_plus_one() {
    for ranks in 1..=6 {
        for v in 1..=3 {
            for m in (ranks..=10).step_by(ranks) {
                let schedule = interleaved(ranks, v, m).unwrap();
                for r in 0..ranks {
                    let warmup = (ranks - r - 1) * 2 + (v - 1) * ranks;
                    let want = (warmup + 1).min(m * v);
                    let got = max_in_flight(&schedule, Rank(r as u32));
                    assert_eq!(got, want, "interleaved({ranks}, {v}, {m}) rank {r}");
                }
            }
        }
    }
}

/// With uniform stage costs and free communication GPipe and 1F1B both reach the textbook bubble
/// (S-1)/(M+S-1), for any forward/backward cost ratio.
#[test]
fn gpipe_and_one_f_one_b_reach_the_ideal_bubble() {
    for (name, generate) in &LINEAR[..2] {
        for s in 1..=6 {
            for m in 1..=10 {
                let lowered = lower(&generate(s, m).unwrap()).unwrap();
                for (f, b) in [(1, 2), (1, 1), (3, 5)] {
                    let usage = simulate(&lowered, &Costs::uniform(s, f, b)).unwrap();
                    let ideal = ideal_idle_fraction(s, m);
                    assert!(
                        (usage.idle_fraction - ideal).abs() < 1e-12,
                        "{name}({s}, {m}) F={f} B={b}: idle {} vs ideal {ideal}",
                        usage.idle_fraction
                    );
                    assert_eq!(
                        usage.makespan,
                        (m + s - 1) as u64 * (f + b),
                        "{name}({s}, {m})"
                    );
                }
            }
        }
    }
}

/// Interleaving divides the bubble by V: (R-1)/(V*M + R-1) with uniform virtual-stage costs.
#[test]
fn interleaved_bubble_shrinks_with_virtual_stages() {
    for ranks in 1..=6 {
        for v in 1..=3 {
            for m in (ranks..=12).step_by(ranks) {
                let lowered = lower(&interleaved(ranks, v, m).unwrap()).unwrap();
                let usage = simulate(&lowered, &Costs::unit(lowered.stages)).unwrap();
                let ideal = (ranks - 1) as f64 / (v * m + ranks - 1) as f64;
                assert!(
                    (usage.idle_fraction - ideal).abs() < 1e-12,
                    "interleaved({ranks}, {v}, {m}): idle {} vs {ideal}",
                    usage.idle_fraction
                );
            }
        }
    }
}

/// A slower stage stretches the step: busy time is exact, idle time absorbs the imbalance.
#[test]
fn simulate_reports_per_rank_busy_time_for_uneven_stages() {
    let lowered = lower(&super::super::one_f_one_b(3, 4).unwrap()).unwrap();
    let costs = Costs {
        forward: vec![1, 3, 1],
        backward: vec![2, 6, 2],
        transfer: 1,
        reduce: 1,
        optimizer: 1,
    };
    let usage = simulate(&lowered, &costs).unwrap();
    assert_eq!(usage.busy, vec![4 * 3 + 2, 4 * 9 + 2, 4 * 3 + 2]);
    for r in 0..3 {
        assert_eq!(usage.busy[r] + usage.idle[r], usage.makespan);
    }
    // The middle stage starts after stage 0's first forward and one transfer.
    assert!(usage.makespan >= 1 + 1 + usage.busy[1]);
    assert!(usage.idle_fraction > ideal_idle_fraction(3, 4));
}

#[test]
fn interleaved_needs_micro_batches_divisible_by_ranks() {
    for (ranks, m) in [(2, 3), (4, 6), (3, 10)] {
        let err = interleaved(ranks, 2, m).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Unsupported { .. }), "{text}");
        assert!(
            text.contains(&format!("M={m}")) && text.contains(&format!("S={ranks}")),
            "{text}"
        );
    }
}

#[test]
fn one_rank_interleaving_needs_no_communication() {
    let lowered = lower(&interleaved(1, 3, 4).unwrap()).unwrap();
    assert!(!lowered.is_lowered());
    validate(&lowered).unwrap();
}

#[test]
fn empty_pipelines_are_rejected() {
    for (name, generate) in LINEAR {
        assert!(generate(0, 4).is_err(), "{name}");
        assert!(generate(2, 0).is_err(), "{name}");
    }
    assert!(interleaved(2, 0, 4).is_err());
}
