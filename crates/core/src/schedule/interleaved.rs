//! Megatron-LM's interleaved 1F1B: each rank hosts V virtual stages (model chunks), stage
//! v*R + r on rank r, which divides the pipeline bubble by V at the cost of V times more
//! point-to-point traffic.

use super::action::Action;
use super::ids::{MicroBatch, Rank, StageId, id32};
use super::program::{Schedule, check_counts, with_epilogue};
use crate::{Error, Result};

/// Interleaved 1F1B over `ranks` ranks with `virtual_stages` chunks per rank (S = ranks * V
/// stages) and `micro_batches` micro-batches, which must be a multiple of `ranks`.
///
/// Follows Megatron-LM's ordering: rank r runs (R - r - 1) * 2 + (V - 1) * R warm-up forwards
/// (capped at M * V), then steady forward/backward pairs, then the cool-down backwards. The k-th
/// forward of a rank visits chunks in groups of R micro-batches: chunk (k mod (R*V)) / R,
/// micro-batch (k / (R*V)) * R + k mod R; backwards walk the chunks in reverse.
pub fn interleaved(ranks: usize, virtual_stages: usize, micro_batches: usize) -> Result<Schedule> {
    check_counts("interleaved", ranks * virtual_stages, micro_batches)?;
    if !micro_batches.is_multiple_of(ranks) {
        return Err(Error::unsupported(
            "interleaved 1F1B with a micro-batch count that is not a multiple of the pipeline ranks",
            format!(
                "M={micro_batches} micro-batches must be a multiple of S={ranks} ranks \
                 (micro-batches enter in groups of S); use M={} or a non-interleaved schedule",
                micro_batches.div_ceil(ranks) * ranks
            ),
        ));
    }
    let order = Order {
        ranks,
        chunks: virtual_stages,
    };
    let total = micro_batches * virtual_stages;
    let programs = (0..ranks)
        .map(|r| {
            let warmup = ((ranks - r - 1) * 2 + (virtual_stages - 1) * ranks).min(total);
            rank_program(&order, r, warmup, total)
        })
        .collect();
    let stages = ranks * virtual_stages;
    Ok(Schedule {
        ranks,
        stages,
        micro_batches,
        programs: with_epilogue(programs),
        stage_to_rank: (0..stages).map(|s| Rank(id32(s % ranks))).collect(),
    })
}

/// Megatron's iteration-index to (chunk, micro-batch) mapping for one pipeline.
struct Order {
    ranks: usize,
    chunks: usize,
}

impl Order {
    /// The k-th forward (or backward) of rank `r`, as an action on its global stage.
    fn action(&self, r: usize, k: usize, forward: bool) -> Action {
        let group = self.ranks * self.chunks;
        let mut chunk = (k % group) / self.ranks;
        if !forward {
            chunk = self.chunks - chunk - 1;
        }
        let stage = StageId(id32(chunk * self.ranks + r));
        let mb = MicroBatch(id32((k / group) * self.ranks + k % self.ranks));
        if forward {
            Action::Forward { stage, mb }
        } else {
            Action::Backward { stage, mb }
        }
    }
}

fn rank_program(order: &Order, r: usize, warmup: usize, total: usize) -> Vec<Action> {
    let mut program: Vec<Action> = (0..warmup).map(|k| order.action(r, k, true)).collect();
    // Steady state: Megatron runs the next forward before the oldest outstanding backward.
    for k in 0..total - warmup {
        program.push(order.action(r, warmup + k, true));
        program.push(order.action(r, k, false));
    }
    program.extend((total - warmup..total).map(|k| order.action(r, k, false)));
    program
}
