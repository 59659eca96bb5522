//! The shared state of one in-process group and the round protocol (see `local`): what a rank
//! deposits, how a round is matched, completed and delivered, and how a stuck round is
//! diagnosed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::communicator::{CollectiveKind, ReduceOp, collective_error, reduce_in_rank_order};
use crate::error::Error;

/// What one rank asked for; every rank of a round must ask for the same thing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Call {
    pub(super) kind: CollectiveKind,
    /// The length every rank must agree on: the buffer, or the input for out-of-place calls.
    pub(super) count: usize,
    pub(super) op: Option<ReduceOp>,
    /// Group rank of the root, for broadcast and reduce.
    pub(super) root: Option<usize>,
    /// A meeting only (`LocalCommunicator::meet`): the ranks exchange this many tokens each,
    /// another engine moves the data.
    pub(super) meet: Option<usize>,
}

impl Call {
    pub(super) fn new(kind: CollectiveKind, count: usize) -> Call {
        Call {
            kind,
            count,
            op: None,
            root: None,
            meet: None,
        }
    }
}

pub(super) struct Group {
    /// Global ranks; index = group rank.
    pub(super) ranks: Vec<usize>,
    pub(super) timeout: Duration,
    pub(super) state: Mutex<State>,
    pub(super) changed: Condvar,
}

pub(super) struct State {
    pub(super) rounds: HashMap<u64, Round>,
    /// The first failure; once set, the group is unusable.
    pub(super) failed: Option<String>,
    /// Group ranks whose handle was dropped.
    pub(super) left: Vec<bool>,
    /// (sender, receiver, tag) -> messages in send order.
    pub(super) mailboxes: HashMap<(usize, usize, u64), VecDeque<Vec<f32>>>,
    /// Staging and result buffers of finished rounds, reused so a training step does not
    /// allocate (and page-fault) fresh megabytes for every all-reduce.
    pub(super) spare: Vec<Vec<f32>>,
}

/// At most this many spare buffers are kept per group.
const MAX_SPARE: usize = 8;

impl State {
    /// A buffer holding a copy of `data`, reusing a spare one when there is one.
    pub(super) fn staged(&mut self, data: &[f32]) -> Vec<f32> {
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(data);
        v
    }

    /// Keep a finished round's buffers for reuse.
    pub(super) fn recycle(&mut self, round: Round) {
        let result = Arc::try_unwrap(round.result).ok();
        for v in round.inputs.into_iter().flatten().chain(result) {
            if self.spare.len() < MAX_SPARE && v.capacity() > 0 {
                self.spare.push(v);
            }
        }
    }
}

/// One collective in progress: the staging area shared by all ranks.
pub(super) struct Round {
    /// The first arrival's group rank and call, which everyone else must match.
    pub(super) first: (usize, Call),
    /// Each rank's copy of its input; `Some` once it has arrived.
    pub(super) inputs: Vec<Option<Vec<f32>>>,
    pub(super) arrived: usize,
    /// The reduction or concatenation, computed once by the last rank to arrive.
    /// Shared so ranks copy their share out after releasing the group lock.
    pub(super) result: Arc<Vec<f32>>,
    pub(super) complete: bool,
    pub(super) departed: usize,
}

impl Group {
    pub(super) fn new(ranks: Vec<usize>, timeout: Duration) -> Arc<Group> {
        let n = ranks.len();
        let state = State {
            rounds: HashMap::new(),
            failed: None,
            left: vec![false; n],
            mailboxes: HashMap::new(),
            spare: Vec::new(),
        };
        Arc::new(Group {
            ranks,
            timeout,
            state: Mutex::new(state),
            changed: Condvar::new(),
        })
    }

    /// A rank thread that panicked while holding the lock leaves the state consistent (every
    /// mutation is a complete step), so the others keep going and report errors, not panics.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn n(&self) -> usize {
        self.ranks.len()
    }

    pub(super) fn label(&self) -> String {
        list(&self.ranks)
    }

    /// "all_reduce #3 (1024 f32) on group [0,1,2,3]".
    pub(super) fn describe(&self, call: Call, seq: u64) -> String {
        describe(&self.ranks, call, seq)
    }

    /// Record the group's first failure, wake every waiter, and return the error for the caller.
    pub(super) fn fail(&self, st: &mut State, message: String) -> Error {
        st.failed.get_or_insert_with(|| message.clone());
        self.changed.notify_all();
        collective_error(message)
    }

    /// Deposit rank `me`'s input in round `seq`, checking it against the first arrival; the last
    /// arrival completes the round.
    pub(super) fn arrive(
        &self,
        st: &mut State,
        seq: u64,
        me: usize,
        call: Call,
        input: Vec<f32>,
    ) -> Result<(), String> {
        let n = self.n();
        let round = st.rounds.entry(seq).or_insert_with(|| Round {
            first: (me, call),
            inputs: vec![None; n],
            arrived: 0,
            result: Arc::new(Vec::new()),
            complete: false,
            departed: 0,
        });
        let (other, first) = round.first;
        check_match(&self.ranks, seq, (me, call), (other, first))?;
        round.inputs[me] = Some(input);
        round.arrived += 1;
        if round.arrived == n {
            let spare = st.spare.pop();
            let round = st.rounds.get_mut(&seq).expect("the round just arrived at");
            round.complete(call, spare);
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Why the round cannot complete yet, if it never will: the timeout passed, or a missing
    /// rank has dropped its handle.
    pub(super) fn stuck(
        &self,
        st: &State,
        call: Call,
        seq: u64,
        timed_out: bool,
    ) -> Option<String> {
        let round = st.rounds.get(&seq)?;
        let missing: Vec<usize> = (0..self.n())
            .filter(|&r| round.inputs[r].is_none())
            .collect();
        let gone: Vec<usize> = missing.iter().copied().filter(|&r| st.left[r]).collect();
        let desc = self.describe(call, seq);
        if !gone.is_empty() {
            let gone = list(&gone.iter().map(|&r| self.ranks[r]).collect::<Vec<_>>());
            return Some(format!(
                "{desc} cannot complete: ranks {gone} left the group \
                 (their communicators were dropped) without arriving"
            ));
        }
        timed_out.then(|| {
            let missing = list(&missing.iter().map(|&r| self.ranks[r]).collect::<Vec<_>>());
            format!(
                "{desc} timed out after {:?}: ranks {missing} did not arrive",
                self.timeout
            )
        })
    }
}

impl Round {
    /// Compute what the ranks will copy out. Broadcast and all-to-all copy straight from the
    /// inputs; a barrier moves nothing.
    pub(super) fn complete(&mut self, call: Call, spare: Option<Vec<f32>>) {
        let inputs: Vec<&[f32]> = self
            .inputs
            .iter()
            .map(|x| x.as_deref().unwrap_or(&[]))
            .collect();
        match call.kind {
            _ if call.meet.is_some() => self.result = Arc::new(inputs.concat()),
            CollectiveKind::AllReduce | CollectiveKind::Reduce | CollectiveKind::ReduceScatter => {
                let mut result = spare.unwrap_or_default();
                result.clear();
                result.resize(call.count, 0.0);
                reduce_in_rank_order(&inputs, call.op.unwrap_or(ReduceOp::Sum), &mut result);
                self.result = Arc::new(result);
            }
            CollectiveKind::AllGather => self.result = Arc::new(inputs.concat()),
            CollectiveKind::Broadcast | CollectiveKind::AllToAll | CollectiveKind::Barrier => {}
        }
        self.complete = true;
    }

    /// Copy rank `me`'s share of a completed round into its output buffer (sizes were checked
    /// before arrival).
    pub(super) fn deliver(&self, call: Call, me: usize, output: &mut [f32]) {
        let n = self.inputs.len();
        let input = |r: usize| self.inputs[r].as_deref().unwrap_or(&[]);
        match call.kind {
            _ if call.meet.is_some() => output.copy_from_slice(&self.result),
            CollectiveKind::AllReduce | CollectiveKind::AllGather => {
                output.copy_from_slice(&self.result)
            }
            CollectiveKind::Reduce if call.root == Some(me) => output.copy_from_slice(&self.result),
            CollectiveKind::ReduceScatter => {
                let m = output.len();
                output.copy_from_slice(&self.result[me * m..(me + 1) * m]);
            }
            CollectiveKind::Broadcast => match call.root {
                Some(root) if root != me => output.copy_from_slice(input(root)),
                _ => {}
            },
            CollectiveKind::AllToAll => {
                let m = output.len() / n;
                for (r, chunk) in output.chunks_exact_mut(m.max(1)).enumerate().take(n) {
                    chunk.copy_from_slice(&input(r)[me * m..(me + 1) * m]);
                }
            }
            CollectiveKind::Reduce | CollectiveKind::Barrier => {}
        }
    }
}

/// "all_reduce #3 (1024 f32) on group [0,1,2,3]": a collective of the group whose global ranks
/// are `ranks` (every engine words it the same).
pub(super) fn describe(ranks: &[usize], call: Call, seq: u64) -> String {
    let label = list(ranks);
    match call.kind {
        CollectiveKind::Barrier => format!("barrier #{seq} on group {label}"),
        kind => format!("{kind} #{seq} ({} f32) on group {label}", call.count),
    }
}

/// "broadcast (root 2, 16 f32)", for mismatch reports; the root as a global rank.
pub(super) fn describe_call(ranks: &[usize], call: Call) -> String {
    let mut parts = Vec::new();
    if let Some(op) = call.op {
        parts.push(op.to_string());
    }
    if let Some(root) = call.root {
        parts.push(format!("root {}", ranks[root]));
    }
    if call.kind != CollectiveKind::Barrier {
        parts.push(format!("{} f32", call.count));
    }
    if parts.is_empty() {
        call.kind.to_string()
    } else {
        format!("{} ({})", call.kind, parts.join(", "))
    }
}

/// Two ranks' calls of round `seq` must agree: the same collective, then the same element count.
/// The lower rank is named first, so the message does not depend on who arrived first.
pub(super) fn check_match(
    ranks: &[usize],
    seq: u64,
    (rx, x): (usize, Call),
    (ry, y): (usize, Call),
) -> Result<(), String> {
    let ((ra, a), (rb, b)) = if ry < rx {
        ((ry, y), (rx, x))
    } else {
        ((rx, x), (ry, y))
    };
    let (ga, gb, label) = (ranks[ra], ranks[rb], list(ranks));
    if (a.kind, a.op, a.root, a.meet) != (b.kind, b.op, b.root, b.meet) {
        let (da, db) = (describe_call(ranks, a), describe_call(ranks, b));
        return Err(format!(
            "collective mismatch at #{seq} on group {label}: rank {ga} called {da} \
             but rank {gb} called {db}"
        ));
    }
    if a.count != b.count {
        return Err(format!(
            "{} #{seq} on group {label}: element counts differ: \
             rank {ga} has {} f32, rank {gb} has {} f32",
            x.kind, a.count, b.count
        ));
    }
    Ok(())
}

/// "recv from rank 3 (tag 7, 16 f32) on group [1,3]".
pub(super) fn describe_recv(ranks: &[usize], from: usize, tag: u64, len: usize) -> String {
    format!(
        "recv from rank {} (tag {tag}, {len} f32) on group {}",
        ranks[from],
        list(ranks)
    )
}

/// A point-to-point peer must be a rank of the group.
pub(super) fn check_peer(
    ranks: &[usize],
    peer: usize,
    what: &str,
    tag: u64,
) -> crate::error::Result<()> {
    if peer < ranks.len() {
        return Ok(());
    }
    Err(collective_error(format!(
        "{what} group rank {peer} (tag {tag}) on group {}: the group has {} ranks",
        list(ranks),
        ranks.len()
    )))
}

/// "[0,2,4]": compact, so long groups stay readable on one line.
pub(super) fn list<T: ToString>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", inner.join(","))
}
