//! The one execution model of a schedule, used for validation, the grid and cost estimates:
//! every rank runs its program in order, an action starts once its inputs exist, receives block
//! until the matching send ran, sends never block.

use super::action::{Action, Payload};
use super::format::render;
use super::ids::{MicroBatch, Rank, StageId, id32};
use super::program::Schedule;
use super::validate::{check_indices, invalid};
use crate::Result;
use std::collections::{HashMap, VecDeque};

/// Durations, in integer ticks of any unit (unit costs for grids; microseconds for estimates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Costs {
    /// [stages]: forward time of each stage for one micro-batch.
    pub forward: Vec<u64>,
    /// [stages]: backward time of each stage for one micro-batch.
    pub backward: Vec<u64>,
    /// Latency of one point-to-point transfer, from send to possible receipt.
    pub transfer: u64,
    /// Time of the data-parallel gradient reduction on each rank.
    pub reduce: u64,
    /// Time of the optimizer step on each rank.
    pub optimizer: u64,
}

impl Costs {
    /// The same forward and backward cost for every stage; communication and epilogue free.
    pub fn uniform(stages: usize, forward: u64, backward: u64) -> Self {
        Costs {
            forward: vec![forward; stages],
            backward: vec![backward; stages],
            transfer: 0,
            reduce: 0,
            optimizer: 0,
        }
    }

    /// The grid's default: F = 1, B = 2 (a backward costs about two forwards), comm = 0.
    pub fn unit(stages: usize) -> Self {
        Costs::uniform(stages, 1, 2)
    }

    fn of(&self, action: &Action) -> u64 {
        match *action {
            Action::Forward { stage, .. } => self.forward[stage.index()],
            Action::Backward { stage, .. } => self.backward[stage.index()],
            Action::ReduceGrads => self.reduce,
            Action::OptimizerStep => self.optimizer,
            _ => 0,
        }
    }
}

/// When one executed action of a rank ran: `program[index]` occupied `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub index: usize,
    pub start: u64,
    pub end: u64,
}

/// Ranks that can no longer progress, and the action each one is blocked on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlock {
    /// The time the last runnable action finished.
    pub time: u64,
    /// (rank, index into its program) of every unfinished rank, ascending by rank.
    pub waiting: Vec<(Rank, usize)>,
}

/// The result of running a schedule: executed spans per rank, and a deadlock if it stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// [ranks][executed actions] in program order.
    pub spans: Vec<Vec<Span>>,
    pub deadlock: Option<Deadlock>,
}

impl Timeline {
    /// The end of the last action on any rank: the step time.
    pub fn makespan(&self) -> u64 {
        self.spans
            .iter()
            .flatten()
            .map(|s| s.end)
            .max()
            .unwrap_or(0)
    }
}

/// Per-rank busy and idle time over the step; idle = makespan - busy.
#[derive(Clone, Debug, PartialEq)]
pub struct Utilization {
    pub makespan: u64,
    /// [ranks]
    pub busy: Vec<u64>,
    /// [ranks]
    pub idle: Vec<u64>,
    /// Total idle over total device time, sum(idle) / (ranks * makespan): the pipeline bubble.
    pub idle_fraction: f64,
}

/// The bubble of GPipe and 1F1B with uniform stage costs and free communication: (S-1)/(M+S-1).
pub fn ideal_idle_fraction(stages: usize, micro_batches: usize) -> f64 {
    let bubble = stages.saturating_sub(1) as f64;
    bubble / (micro_batches as f64 + bubble)
}

/// Run `schedule` (lowered) under `costs`. Never fails on a deadlock: the timeline stops there
/// and records who waits on what, so the caller can render the partial grid.
pub fn timeline(schedule: &Schedule, costs: &Costs) -> Result<Timeline> {
    check_indices(schedule)?;
    if costs.forward.len() != schedule.stages || costs.backward.len() != schedule.stages {
        return Err(crate::Error::internal(format!(
            "schedule costs list {} forward and {} backward entries for {} stages",
            costs.forward.len(),
            costs.backward.len(),
            schedule.stages
        )));
    }
    let mut sim = Sim::new(schedule, costs);
    sim.run();
    Ok(sim.finish())
}

/// Busy and idle time per rank of a lowered schedule; a deadlock is an `Error::Verify` that
/// carries the partial grid.
pub fn simulate(schedule: &Schedule, costs: &Costs) -> Result<Utilization> {
    let timeline = timeline(schedule, costs)?;
    if let Some(deadlock) = &timeline.deadlock {
        return Err(invalid(
            &deadlock_line(schedule, deadlock),
            &render(schedule, &timeline),
        ));
    }
    let makespan = timeline.makespan();
    let busy: Vec<u64> = timeline
        .spans
        .iter()
        .map(|spans| spans.iter().map(|s| s.end - s.start).sum())
        .collect();
    let idle: Vec<u64> = busy.iter().map(|b| makespan - b).collect();
    let device_time = makespan as f64 * schedule.ranks as f64;
    let idle_fraction = if device_time > 0.0 {
        idle.iter().sum::<u64>() as f64 / device_time
    } else {
        0.0
    };
    Ok(Utilization {
        makespan,
        busy,
        idle,
        idle_fraction,
    })
}

/// `deadlock at time 7: rank 0 waits on RG1.2<1, rank 1 waits on RA0.3<0`.
pub(crate) fn deadlock_line(schedule: &Schedule, deadlock: &Deadlock) -> String {
    let waits: Vec<String> = deadlock
        .waiting
        .iter()
        .map(|&(rank, i)| {
            format!(
                "rank {rank} waits on {}",
                schedule.programs[rank.index()][i]
            )
        })
        .collect();
    format!("deadlock at time {}: {}", deadlock.time, waits.join(", "))
}

/// The most micro-batches whose forward ran on `rank` but whose backward has not yet: how many
/// stage activations the rank must keep alive at once (its activation-memory bound).
pub fn max_in_flight(schedule: &Schedule, rank: Rank) -> usize {
    let mut live = 0usize;
    let mut peak = 0usize;
    for action in &schedule.programs[rank.index()] {
        match action {
            Action::Forward { .. } => {
                live += 1;
                peak = peak.max(live);
            }
            Action::Backward { .. } => live = live.saturating_sub(1),
            _ => {}
        }
    }
    peak
}

type Tensor = (Rank, Payload, StageId, MicroBatch);
/// A transfer's identity: (payload, producing stage, micro-batch, from rank, to rank).
pub(crate) type Wire = (Payload, StageId, MicroBatch, Rank, Rank);

/// Simulation state: one program counter and clock per rank, plus which tensors exist where.
struct Sim<'a> {
    schedule: &'a Schedule,
    costs: &'a Costs,
    pc: Vec<usize>,
    clock: Vec<u64>,
    spans: Vec<Vec<Span>>,
    /// When a stage output (activation or input-gradient) became available on a rank.
    available: HashMap<Tensor, u64>,
    /// When a forward ran on a rank: the backward needs its saved activations there.
    forwarded: HashMap<(Rank, StageId, MicroBatch), u64>,
    /// Sent but not yet received transfers, (payload, stage, mb, from, to) -> arrival times.
    wires: HashMap<Wire, VecDeque<u64>>,
}

impl<'a> Sim<'a> {
    fn new(schedule: &'a Schedule, costs: &'a Costs) -> Self {
        Sim {
            schedule,
            costs,
            pc: vec![0; schedule.ranks],
            clock: vec![0; schedule.ranks],
            spans: vec![Vec::new(); schedule.ranks],
            available: HashMap::new(),
            forwarded: HashMap::new(),
            wires: HashMap::new(),
        }
    }

    /// Sweep the ranks, each running as far as it can, until all finish or none can move.
    /// Start times are exact regardless of sweep order: an action runs only once everything it
    /// depends on has run, and starts at max(own clock, inputs ready).
    fn run(&mut self) {
        loop {
            let mut progressed = false;
            for r in 0..self.schedule.ranks {
                while let Some(ready) = self.next_ready(r) {
                    self.execute(r, ready);
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn finish(self) -> Timeline {
        let waiting: Vec<(Rank, usize)> = (0..self.schedule.ranks)
            .filter(|&r| self.pc[r] < self.schedule.programs[r].len())
            .map(|r| (Rank(id32(r)), self.pc[r]))
            .collect();
        let deadlock = (!waiting.is_empty()).then(|| Deadlock {
            time: self.clock.iter().copied().max().unwrap_or(0),
            waiting,
        });
        Timeline {
            spans: self.spans,
            deadlock,
        }
    }

    /// The time rank `r`'s next action's inputs are ready, or `None` if it is blocked or done.
    fn next_ready(&self, r: usize) -> Option<u64> {
        let action = self.schedule.programs[r].get(self.pc[r])?;
        let rank = Rank(id32(r));
        let last = self.schedule.last_stage();
        match *action {
            Action::Forward { stage, .. } if stage.0 == 0 => Some(0),
            Action::Forward { stage, mb } => self.get(rank, Payload::Activation, stage.0 - 1, mb),
            Action::Backward { stage, mb } => {
                let forward = *self.forwarded.get(&(rank, stage, mb))?;
                let grad = if stage == last {
                    0
                } else {
                    self.get(rank, Payload::Grad, stage.0 + 1, mb)?
                };
                Some(forward.max(grad))
            }
            Action::ReduceGrads | Action::OptimizerStep => Some(0),
            _ => {
                let t = action
                    .transfer()
                    .expect("internal error: comm action has a transfer");
                if t.is_send {
                    self.get(rank, t.payload, t.stage.0, t.mb)
                } else {
                    let wire = (t.payload, t.stage, t.mb, t.peer, rank);
                    self.wires.get(&wire)?.front().copied()
                }
            }
        }
    }

    fn get(&self, rank: Rank, payload: Payload, stage: u32, mb: MicroBatch) -> Option<u64> {
        self.available
            .get(&(rank, payload, StageId(stage), mb))
            .copied()
    }

    fn execute(&mut self, r: usize, ready: u64) {
        let index = self.pc[r];
        let action = self.schedule.programs[r][index];
        let rank = Rank(id32(r));
        let start = self.clock[r].max(ready);
        let end = start + self.costs.of(&action);
        match action {
            Action::Forward { stage, mb } => {
                self.forwarded.insert((rank, stage, mb), end);
                self.available
                    .insert((rank, Payload::Activation, stage, mb), end);
            }
            Action::Backward { stage, mb } => {
                self.available.insert((rank, Payload::Grad, stage, mb), end);
            }
            _ => self.transfer(rank, &action, start),
        }
        self.clock[r] = end;
        self.pc[r] += 1;
        self.spans[r].push(Span { index, start, end });
    }

    /// A send puts the tensor on the wire (arriving `transfer` later); a receive takes it off
    /// and makes it available on the receiving rank.
    fn transfer(&mut self, rank: Rank, action: &Action, start: u64) {
        let Some(t) = action.transfer() else { return };
        if t.is_send {
            let wire = (t.payload, t.stage, t.mb, rank, t.peer);
            let arrival = start + self.costs.transfer;
            self.wires.entry(wire).or_default().push_back(arrival);
        } else {
            let wire = (t.payload, t.stage, t.mb, t.peer, rank);
            if let Some(queue) = self.wires.get_mut(&wire) {
                queue.pop_front();
            }
            self.available
                .insert((rank, t.payload, t.stage, t.mb), start);
        }
    }
}
