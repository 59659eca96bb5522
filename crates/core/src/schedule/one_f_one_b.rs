//! 1F1B (PipeDream-flush), EPL's `PreferBackward`, and its extra-warm-up variant
//! `PreferBackwardOptimizer`: warm up with a few forwards, then alternate one backward and one
//! forward so a stage never holds more activations than its warm-up depth.

use super::action::Action;
use super::ids::{MicroBatch, StageId, id32};
use super::program::{Schedule, check_counts, linear};
use crate::Result;

/// 1F1B: stage s runs min(S-s, M) forwards, then alternates B/F, then drains the remaining
/// backwards; backwards in micro-batch order. The last stage strictly alternates F0 B0 F1 B1.
pub fn one_f_one_b(stages: usize, micro_batches: usize) -> Result<Schedule> {
    check_counts("one_f_one_b", stages, micro_batches)?;
    let programs = (0..stages)
        .map(|s| stage_program(s, (stages - s).min(micro_batches), micro_batches))
        .collect();
    Ok(linear(stages, micro_batches, programs))
}

/// EPL's `PreferBackwardOptimizer`: like 1F1B but every non-last stage warms up with one extra
/// forward, min(S-s+1, M), so the next forward is already done when a gradient arrives; the last
/// stage still strictly alternates (EPL's scheduler_test, 4 stages x 6 micro-batches).
pub fn one_f_one_b_extra_warmup(stages: usize, micro_batches: usize) -> Result<Schedule> {
    check_counts("one_f_one_b_extra_warmup", stages, micro_batches)?;
    let programs = (0..stages)
        .map(|s| {
            let warmup = if s + 1 == stages { 1 } else { stages - s + 1 };
            stage_program(s, warmup.min(micro_batches), micro_batches)
        })
        .collect();
    Ok(linear(stages, micro_batches, programs))
}

/// Built in explicit phases (warm-up, steady B/F pairs, cool-down) rather than DeepSpeed-style
/// step-parity arithmetic, so each phase can be read off the code.
fn stage_program(stage: usize, warmup: usize, micro_batches: usize) -> Vec<Action> {
    let stage = StageId(id32(stage));
    let forward = |m: usize| Action::Forward {
        stage,
        mb: MicroBatch(id32(m)),
    };
    let backward = |m: usize| Action::Backward {
        stage,
        mb: MicroBatch(id32(m)),
    };
    let mut program: Vec<Action> = (0..warmup).map(forward).collect();
    for m in 0..micro_batches {
        program.push(backward(m));
        // Steady state: each backward frees one activation slot, refilled by the next forward.
        if warmup + m < micro_batches {
            program.push(forward(warmup + m));
        }
    }
    program
}
