//! The in-process engine: the ranks of a group are threads of one process sharing one `Group`
//! (a mutex-protected state and a condition variable; nobody spins).
//!
//! Protocol. Every rank numbers its collectives on a group 1, 2, 3, ...; the k-th call of each
//! rank meets the others in round k. A rank deposits a copy of its input in the round and
//! waits; the last rank to arrive computes the result in rank order (so arrival order never
//! changes a bit) and wakes everyone; each rank copies its share out, and the last to leave
//! drops the round. A round cannot complete without every rank, so at most two consecutive
//! rounds are alive at a time.
//!
//! Failure. A rank that waits longer than the group's timeout, ranks that call different
//! collectives or disagree on sizes, a bad buffer, or a rank whose communicator is dropped
//! before it arrives: each marks the whole group failed with one message naming the collective,
//! its number, the group and the culprits; every waiting rank returns that message and later
//! calls fail at once. A failed group stays failed: its ranks no longer agree on where they are.
//!
//! Point-to-point messages are buffered per (sender, receiver, tag): `send` copies and returns,
//! `recv` takes the oldest matching message or times out naming the peer and the tag.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::communicator::{
    CollectiveKind, Communicator, ReduceOp, check_buffers, collective_error, deliver,
    u64s_to_words, words_to_u64s,
};
use super::group::{Call, Group, State, check_peer, describe_recv, list};
use crate::error::Result;

/// Constructors for in-process groups. A group exists only through its members' handles.
pub struct LocalGroup;

impl LocalGroup {
    /// A group of ranks `0..n`; element r is rank r's handle, to be moved to its thread.
    #[allow(clippy::new_ret_no_self)] // a group is only ever used through its members' handles
    pub fn new(n: usize, timeout: Duration) -> Vec<LocalCommunicator> {
        if n == 0 {
            return Vec::new();
        }
        handles(Group::new((0..n).collect(), timeout))
    }

    /// A group over the given global ranks; group rank i is `ranks[i]`. Messages name the global
    /// ranks, so the failures of a subgroup read in the same numbers as the world's.
    pub fn with_ranks(ranks: &[usize], timeout: Duration) -> Result<Vec<LocalCommunicator>> {
        if ranks.is_empty() {
            return Err(collective_error("a group needs at least one rank".into()));
        }
        for (i, r) in ranks.iter().enumerate() {
            if ranks[..i].contains(r) {
                let list = list(ranks);
                return Err(collective_error(format!(
                    "group {list}: rank {r} appears twice"
                )));
            }
        }
        Ok(handles(Group::new(ranks.to_vec(), timeout)))
    }

    /// Independent groups over ranks of a `world`, e.g. data-parallel groups `[[0,2],[1,3]]` or
    /// pipeline pairs `[[0,1],[2,3]]`. Element g of the result holds group g's handles in member
    /// order (handle i belongs to global rank `groups[g][i]`). Groups never block each other, and
    /// a rank may belong to several (one handle per group).
    pub fn subgroups(
        world: usize,
        groups: &[Vec<usize>],
        timeout: Duration,
    ) -> Result<Vec<Vec<LocalCommunicator>>> {
        for (g, ranks) in groups.iter().enumerate() {
            if let Some(r) = ranks.iter().find(|&&r| r >= world) {
                let list = list(ranks);
                return Err(collective_error(format!(
                    "subgroups of {world} ranks: group {g} {list}: \
                     rank {r} is not below the world size"
                )));
            }
        }
        groups
            .iter()
            .map(|ranks| Self::with_ranks(ranks, timeout))
            .collect()
    }
}

/// One handle per member of a fresh group, in group-rank order.
fn handles(group: Arc<Group>) -> Vec<LocalCommunicator> {
    (0..group.n())
        .map(|rank| LocalCommunicator {
            group: Arc::clone(&group),
            rank,
            calls: AtomicU64::new(0),
        })
        .collect()
}

/// One rank's handle on an in-process group.
pub struct LocalCommunicator {
    group: Arc<Group>,
    rank: usize,
    /// Number of collectives this rank has started on the group.
    calls: AtomicU64,
}

impl LocalCommunicator {
    /// This rank's number in the world (what messages print).
    pub fn global_rank(&self) -> usize {
        self.group.ranks[self.rank]
    }

    /// The group's global ranks, in group-rank order.
    pub fn group_ranks(&self) -> &[usize] {
        &self.group.ranks
    }

    pub fn timeout(&self) -> Duration {
        self.group.timeout
    }

    /// One round of collective `kind` over `count` elements in which the ranks exchange only
    /// `tokens` (ranks passing different numbers of them is a mismatch) and get every rank's,
    /// in rank order: how an engine that moves the data itself (a GPU group copying device
    /// memory) meets, with this group's matching, timeout and failure reports worded as for
    /// the real collective.
    pub fn meet(
        &self,
        kind: CollectiveKind,
        count: usize,
        op: Option<ReduceOp>,
        tokens: &[u64],
    ) -> Result<Vec<u64>> {
        let call = Call {
            op,
            meet: Some(tokens.len()),
            ..Call::new(kind, count)
        };
        let staged = u64s_to_words(tokens);
        let mut all = vec![0.0f32; staged.len() * self.group.n()];
        self.run(call, || staged, &mut all, None)?;
        Ok(words_to_u64s(&all))
    }
}

impl fmt::Debug for LocalCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCommunicator")
            .field("rank", &self.rank)
            .field("group", &self.group.ranks)
            .finish()
    }
}

impl Drop for LocalCommunicator {
    /// A rank that exits (an error, a panic) takes its handle with it; peers waiting for it learn
    /// at once instead of after the timeout.
    fn drop(&mut self) {
        let mut st = self.group.lock();
        st.left[self.rank] = true;
        self.group.changed.notify_all();
    }
}

impl LocalCommunicator {
    /// Run one collective: check this rank's buffers, arrive, wait for the round to complete or
    /// fail, copy the share out. `stage` copies the input that goes to the other ranks.
    fn run(
        &self,
        call: Call,
        stage: impl FnOnce() -> Vec<f32>,
        output: &mut [f32],
        output_len: Option<usize>,
    ) -> Result<()> {
        let g = &*self.group;
        let seq = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let checked = match call.meet {
            // The engine that moves the data checked its buffers before meeting.
            Some(_) => Ok(()),
            None => check_buffers(call.kind, g.n(), call.count, output_len, call.root),
        };
        let input = if checked.is_ok() { stage() } else { Vec::new() };
        let mut st = g.lock();
        if let Some(earlier) = &st.failed {
            let desc = g.describe(call, seq);
            return Err(collective_error(format!(
                "{desc} cannot start: the group failed earlier: {earlier}"
            )));
        }
        if let Err(why) = checked {
            let message = format!(
                "{} on rank {}: {why}",
                g.describe(call, seq),
                self.global_rank()
            );
            return Err(g.fail(&mut st, message));
        }
        if let Err(message) = g.arrive(&mut st, seq, self.rank, call, input) {
            return Err(g.fail(&mut st, message));
        }
        let deadline = Instant::now() + g.timeout;
        loop {
            if let Some(round) = st.rounds.get_mut(&seq).filter(|r| r.complete) {
                // All-reduce and all-gather copy their (large) result after releasing the lock,
                // so the ranks copy in parallel instead of one after another.
                let whole = call.meet.is_some()
                    || matches!(
                        call.kind,
                        CollectiveKind::AllReduce | CollectiveKind::AllGather
                    );
                let shared = whole.then(|| Arc::clone(&round.result));
                if shared.is_none() {
                    round.deliver(call, self.rank, output);
                }
                round.departed += 1;
                if round.departed == g.n()
                    && let Some(done) = st.rounds.remove(&seq)
                {
                    st.recycle(done);
                }
                drop(st);
                if let Some(result) = shared {
                    output.copy_from_slice(&result);
                }
                return Ok(());
            }
            if let Some(message) = &st.failed {
                return Err(collective_error(message.clone()));
            }
            let now = Instant::now();
            if let Some(message) = g.stuck(&st, call, seq, now >= deadline) {
                return Err(g.fail(&mut st, message));
            }
            st = g
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Why a recv that found no message will never get one, if it will not.
    fn recv_stuck(
        &self,
        st: &State,
        from: usize,
        tag: u64,
        len: usize,
        timed_out: bool,
    ) -> Option<String> {
        let g = &*self.group;
        let desc = describe_recv(&self.group.ranks, from, tag, len);
        let peer = g.ranks[from];
        if let Some(earlier) = &st.failed {
            return Some(format!(
                "{desc} cannot complete: the group failed earlier: {earlier}"
            ));
        }
        if st.left[from] {
            return Some(format!(
                "{desc} cannot complete: rank {peer} left the group without sending it"
            ));
        }
        if !timed_out {
            return None;
        }
        let mut pending: Vec<u64> = st
            .mailboxes
            .keys()
            .filter(|k| k.0 == from && k.1 == self.rank)
            .map(|k| k.2)
            .collect();
        pending.sort_unstable();
        // The commonest cause of a stuck recv is a tag mismatch; show what did arrive.
        let hint = if pending.is_empty() {
            String::new()
        } else {
            format!(
                " (its unreceived messages here have tags {})",
                list(&pending)
            )
        };
        Some(format!(
            "{desc} timed out after {:?}: rank {peer} sent nothing with tag {tag}{hint}",
            g.timeout
        ))
    }
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.n()
    }

    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let call = Call {
            op: Some(op),
            ..Call::new(CollectiveKind::AllReduce, buf.len())
        };
        let input = self.group.lock().staged(buf);
        self.run(call, || input, buf, None)
    }

    fn all_gather(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        let call = Call::new(CollectiveKind::AllGather, input.len());
        let len = output.len();
        let input = self.group.lock().staged(input);
        self.run(call, || input, output, Some(len))
    }

    fn reduce_scatter(&self, input: &[f32], output: &mut [f32], op: ReduceOp) -> Result<()> {
        let call = Call {
            op: Some(op),
            ..Call::new(CollectiveKind::ReduceScatter, input.len())
        };
        let len = output.len();
        let input = self.group.lock().staged(input);
        self.run(call, || input, output, Some(len))
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let call = Call {
            root: Some(root),
            ..Call::new(CollectiveKind::Broadcast, buf.len())
        };
        // Only the root's data travels.
        let input = if root == self.rank {
            buf.to_vec()
        } else {
            Vec::new()
        };
        self.run(call, || input, buf, None)
    }

    fn reduce(&self, buf: &mut [f32], root: usize, op: ReduceOp) -> Result<()> {
        let call = Call {
            op: Some(op),
            root: Some(root),
            ..Call::new(CollectiveKind::Reduce, buf.len())
        };
        let input = buf.to_vec();
        self.run(call, || input, buf, None)
    }

    fn all_to_all(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        let call = Call::new(CollectiveKind::AllToAll, input.len());
        let len = output.len();
        self.run(call, || input.to_vec(), output, Some(len))
    }

    fn send(&self, buf: &[f32], to: usize, tag: u64) -> Result<()> {
        check_peer(&self.group.ranks, to, "send to", tag)?;
        let message = buf.to_vec();
        let mut st = self.group.lock();
        st.mailboxes
            .entry((self.rank, to, tag))
            .or_default()
            .push_back(message);
        self.group.changed.notify_all();
        Ok(())
    }

    fn recv(&self, buf: &mut [f32], from: usize, tag: u64) -> Result<()> {
        check_peer(&self.group.ranks, from, "recv from", tag)?;
        let g = &*self.group;
        let key = (from, self.rank, tag);
        let deadline = Instant::now() + g.timeout;
        let mut st = g.lock();
        let message = loop {
            if let Some(queue) = st.mailboxes.get_mut(&key) {
                let message = queue.pop_front();
                if queue.is_empty() {
                    st.mailboxes.remove(&key);
                }
                break message.unwrap_or_default();
            }
            let now = Instant::now();
            if let Some(message) = self.recv_stuck(&st, from, tag, buf.len(), now >= deadline) {
                return Err(collective_error(message));
            }
            st = g
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(st);
        let len = buf.len();
        deliver(&message, buf, || {
            describe_recv(&self.group.ranks, from, tag, len)
        })
    }

    fn has_message(&self, from: usize, tag: u64) -> Result<bool> {
        check_peer(&self.group.ranks, from, "probe for a message from", tag)?;
        let st = self.group.lock();
        if let Some(earlier) = &st.failed {
            return Err(collective_error(format!(
                "probe for a message from rank {} (tag {tag}) on group {}: the group failed \
                 earlier: {earlier}",
                self.group.ranks[from],
                self.group.label()
            )));
        }
        Ok(st.mailboxes.contains_key(&(from, self.rank, tag)))
    }

    fn barrier(&self) -> Result<()> {
        self.run(
            Call::new(CollectiveKind::Barrier, 0),
            Vec::new,
            &mut [],
            None,
        )
    }

    fn abort(&self, reason: &str) {
        let mut st = self.group.lock();
        if st.failed.is_none() {
            st.failed = Some(format!("rank {} failed: {reason}", self.global_rank()));
        }
        self.group.changed.notify_all();
    }
}
