//! `Schedule`: one program (action list) per pipeline rank, plus its stable text form, e.g.
//!
//! ```text
//! schedule ranks=2 stages=2 micro_batches=2 stage_to_rank=0,1
//! rank 0: F0.0 SA0.0>1 F0.1 SA0.1>1 RG1.0<1 B0.0 RG1.1<1 B0.1 RED OPT
//! rank 1: RA0.0<0 F1.0 B1.0 SG1.0>0 RA0.1<0 F1.1 B1.1 SG1.1>0 RED OPT
//! ```

use super::action::{Action, parse_error};
use super::ids::{Rank, StageId, id32};
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A pipeline schedule for one replica: what each rank does, in order, for one optimizer step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Number of pipeline ranks (devices of one replica).
    pub ranks: usize,
    /// Number of stages S (ranks times virtual stages per rank when interleaved).
    pub stages: usize,
    /// Number of micro-batches M per optimizer step.
    pub micro_batches: usize,
    /// [ranks][steps]: the program each rank executes top to bottom.
    pub programs: Vec<Vec<Action>>,
    /// [stages]: the rank hosting each stage.
    pub stage_to_rank: Vec<Rank>,
}

impl Schedule {
    /// The rank hosting `stage`.
    pub fn rank_of(&self, stage: StageId) -> Rank {
        self.stage_to_rank[stage.index()]
    }

    /// The stages hosted by `rank`, ascending.
    pub fn stages_on(&self, rank: Rank) -> Vec<StageId> {
        (0..self.stages)
            .map(|s| StageId(id32(s)))
            .filter(|&s| self.rank_of(s) == rank)
            .collect()
    }

    /// The last stage, the one that computes the loss.
    pub fn last_stage(&self) -> StageId {
        StageId(id32(self.stages.saturating_sub(1)))
    }

    /// True when no rank hosts more than one stage, so `F3` names a forward unambiguously.
    pub fn one_stage_per_rank(&self) -> bool {
        (0..self.ranks).all(|r| self.stages_on(Rank(id32(r))).len() <= 1)
    }

    /// True once `lower` has added communication (any send or receive present).
    pub fn is_lowered(&self) -> bool {
        self.programs
            .iter()
            .flatten()
            .any(|a| a.transfer().is_some())
    }

    /// The actions of all ranks with their rank, in rank then program order.
    pub fn actions(&self) -> impl Iterator<Item = (Rank, &Action)> {
        self.programs
            .iter()
            .enumerate()
            .flat_map(|(r, p)| p.iter().map(move |a| (Rank(id32(r)), a)))
    }
}

/// Reject empty pipelines before a generator builds anything.
pub(crate) fn check_counts(generator: &str, stages: usize, micro_batches: usize) -> Result<()> {
    if stages == 0 || micro_batches == 0 {
        return Err(Error::internal(format!(
            "{generator}: a pipeline needs at least one stage and one micro-batch \
             (got S={stages}, M={micro_batches})"
        )));
    }
    Ok(())
}

/// Every generator ends each rank's step the same way: reduce gradients, then apply them.
pub(crate) fn with_epilogue(mut programs: Vec<Vec<Action>>) -> Vec<Vec<Action>> {
    for program in &mut programs {
        program.push(Action::ReduceGrads);
        program.push(Action::OptimizerStep);
    }
    programs
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let placement: Vec<String> = self.stage_to_rank.iter().map(|r| r.to_string()).collect();
        writeln!(
            f,
            "schedule ranks={} stages={} micro_batches={} stage_to_rank={}",
            self.ranks,
            self.stages,
            self.micro_batches,
            placement.join(",")
        )?;
        for (r, program) in self.programs.iter().enumerate() {
            write!(f, "rank {r}:")?;
            for action in program {
                write!(f, " {action}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines
            .next()
            .ok_or_else(|| parse_error("empty schedule text".into()))?;
        let mut schedule = parse_header(header)?;
        for (r, line) in lines.enumerate() {
            schedule.programs.push(parse_rank_line(r, line)?);
        }
        if schedule.programs.len() != schedule.ranks {
            return Err(parse_error(format!(
                "schedule text declares ranks={} but has {} rank lines",
                schedule.ranks,
                schedule.programs.len()
            )));
        }
        Ok(schedule)
    }
}

fn parse_header(line: &str) -> Result<Schedule> {
    let bad = || parse_error(format!("bad schedule header `{line}`"));
    let mut words = line.split_whitespace();
    if words.next() != Some("schedule") {
        return Err(bad());
    }
    let mut field = |key: &str| -> Result<&str> {
        let word = words.next().ok_or_else(bad)?;
        word.strip_prefix(key)
            .and_then(|w| w.strip_prefix('='))
            .ok_or_else(bad)
    };
    let number = |s: &str| s.parse::<usize>().map_err(|_| bad());
    let ranks = number(field("ranks")?)?;
    let stages = number(field("stages")?)?;
    let micro_batches = number(field("micro_batches")?)?;
    let placement = field("stage_to_rank")?;
    let stage_to_rank = placement
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().map(Rank).map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    if stage_to_rank.len() != stages || stage_to_rank.iter().any(|r| r.index() >= ranks) {
        return Err(parse_error(format!(
            "schedule header `{line}`: stage_to_rank must list one rank below {ranks} per stage"
        )));
    }
    Ok(Schedule {
        ranks,
        stages,
        micro_batches,
        programs: Vec::new(),
        stage_to_rank,
    })
}

fn parse_rank_line(r: usize, line: &str) -> Result<Vec<Action>> {
    let prefix = format!("rank {r}:");
    let rest = line
        .strip_prefix(&prefix)
        .ok_or_else(|| parse_error(format!("expected a line starting `{prefix}`, got `{line}`")))?;
    rest.split_whitespace().map(str::parse).collect()
}

/// A schedule with stage s on rank s (GPipe and 1F1B), from per-stage compute programs.
pub(crate) fn linear(stages: usize, micro_batches: usize, programs: Vec<Vec<Action>>) -> Schedule {
    Schedule {
        ranks: stages,
        stages,
        micro_batches,
        programs: with_epilogue(programs),
        stage_to_rank: (0..stages).map(|s| Rank(id32(s))).collect(),
    }
}
