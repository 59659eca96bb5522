//! `TcpCommunicator`: the `Communicator` trait over TCP between processes (or threads standing
//! in for them). Every collective is one exchange over the mesh: each rank sends every peer the
//! part that peer needs (its chunk, the whole buffer, or nothing) headed by the call, then
//! computes its own result from what it received with the shared `reduce_in_rank_order`. The
//! additions happen in rank order on every rank, so results are bit-identical to `LocalGroup`.
//!
//! Every rank sends every peer a frame in every round, even an empty one: a peer that calls a
//! different collective is caught from the header, and a barrier needs nothing more. Failures
//! read as `LocalGroup`'s: the collective, its number, the group and the culprits (ranks that
//! did not arrive, or that left: their process exited or was killed).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::super::communicator::{
    CollectiveKind, Communicator, ReduceOp, check_buffers, collective_error, deliver,
    reduce_in_rank_order,
};
use super::super::group::{Call, check_match, check_peer, describe, describe_recv, list};
use super::link::{Frame, Mesh, Rendezvous, Slot, connect_mesh, file};
use crate::error::Result;

/// One rank's handle on a TCP group.
pub struct TcpCommunicator {
    rank: usize,
    /// Global ranks; index = group rank.
    ranks: Vec<usize>,
    timeout: Duration,
    /// Number of collectives this rank has started on the group.
    calls: AtomicU64,
    mesh: Mesh,
}

impl TcpCommunicator {
    /// Join group rank `rank` of the group over global `ranks`, meeting the peers through the
    /// store. Blocks until every peer has connected (or `rv.timeout` passes, naming the ranks
    /// that did not). Every member must call this concurrently with the same `rv.name`.
    pub fn connect(rv: &Rendezvous<'_>, ranks: &[usize], rank: usize) -> Result<TcpCommunicator> {
        if rank >= ranks.len() {
            return Err(collective_error(format!(
                "group {}: group rank {rank} is not a member",
                list(ranks)
            )));
        }
        let mesh = connect_mesh(rv, ranks, rank)?;
        Ok(TcpCommunicator {
            rank,
            ranks: ranks.to_vec(),
            timeout: rv.timeout,
            calls: AtomicU64::new(0),
            mesh,
        })
    }

    pub fn global_rank(&self) -> usize {
        self.ranks[self.rank]
    }

    fn n(&self) -> usize {
        self.ranks.len()
    }

    /// Mark the group failed here and tell every peer, so their waits end at once too.
    fn fail(&self, message: String) -> crate::error::Error {
        let mut st = self.mesh.inbox.lock();
        st.failed.get_or_insert_with(|| message.clone());
        drop(st);
        self.mesh.inbox.changed.notify_all();
        let frame = Frame::Abort {
            message: message.clone(),
        };
        (0..self.n()).for_each(|peer| self.mesh.send(peer, &frame));
        collective_error(message)
    }

    /// One round: check, send each peer `part(peer)`, and collect every peer's part (element r
    /// is group rank r's; None for this rank).
    fn exchange<'a>(
        &self,
        call: Call,
        output_len: Option<usize>,
        part: impl Fn(usize) -> &'a [f32],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let seq = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let desc = describe(&self.ranks, call, seq);
        if let Some(earlier) = self.mesh.inbox.lock().failed.clone() {
            return Err(collective_error(format!(
                "{desc} cannot start: the group failed earlier: {earlier}"
            )));
        }
        if let Err(why) = check_buffers(call.kind, self.n(), call.count, output_len, call.root) {
            return Err(self.fail(format!("{desc} on rank {}: {why}", self.global_rank())));
        }
        for peer in (0..self.n()).filter(|&p| p != self.rank) {
            let data = part(peer).to_vec();
            self.mesh.send(peer, &Frame::Round { seq, call, data });
        }
        self.collect(call, seq, &desc).map_err(|m| self.fail(m))
    }

    /// Wait for every peer's frame of round `seq`, checking each against this rank's call.
    fn collect(&self, call: Call, seq: u64, desc: &str) -> Result<Vec<Option<Vec<f32>>>, String> {
        let n = self.n();
        let mut got: Vec<Option<Vec<f32>>> = (0..n).map(|_| None).collect();
        let deadline = Instant::now() + self.timeout;
        let inbox = &self.mesh.inbox;
        let mut st = inbox.lock();
        loop {
            for (peer, slot) in got.iter_mut().enumerate() {
                if peer == self.rank || slot.is_some() {
                    continue;
                }
                let Some(queue) = st.frames.get_mut(&(peer, Slot::Round(seq))) else {
                    continue;
                };
                let (theirs, data) = queue.pop_front().unwrap_or_default();
                st.frames.remove(&(peer, Slot::Round(seq)));
                check_match(
                    &self.ranks,
                    seq,
                    (self.rank, call),
                    (peer, theirs.unwrap_or(call)),
                )?;
                *slot = Some(data);
            }
            let missing: Vec<usize> = (0..n)
                .filter(|&p| p != self.rank && got[p].is_none())
                .collect();
            if missing.is_empty() {
                return Ok(got);
            }
            if let Some(earlier) = &st.failed {
                return Err(earlier.clone());
            }
            let gone: Vec<usize> = missing
                .iter()
                .copied()
                .filter(|&p| st.gone[p].is_some())
                .collect();
            if let Some(&first) = gone.first() {
                let why = st.gone[first].clone().unwrap_or_default();
                let names = list(&gone.iter().map(|&p| self.ranks[p]).collect::<Vec<_>>());
                return Err(format!(
                    "{desc} cannot complete: ranks {names} left the group without arriving \
                     ({why}: the process exited or was killed)"
                ));
            }
            let (next, waiting) = inbox.wait(st, deadline);
            st = next;
            if !waiting {
                let names = list(&missing.iter().map(|&p| self.ranks[p]).collect::<Vec<_>>());
                return Err(format!(
                    "{desc} timed out after {:?}: ranks {names} did not arrive",
                    self.timeout
                ));
            }
        }
    }

    /// Every rank's contribution in rank order, this rank's own taken from `own`.
    fn in_rank_order<'a>(&self, got: &'a [Option<Vec<f32>>], own: &'a [f32]) -> Vec<&'a [f32]> {
        (0..self.n())
            .map(|r| {
                if r == self.rank {
                    own
                } else {
                    got[r].as_deref().unwrap_or(&[])
                }
            })
            .collect()
    }

    fn chunk(buf: &[f32], n: usize, i: usize) -> &[f32] {
        let m = buf.len() / n.max(1);
        &buf[i * m..(i + 1) * m]
    }
}

impl fmt::Debug for TcpCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpCommunicator")
            .field("rank", &self.rank)
            .field("group", &self.ranks)
            .finish()
    }
}

impl Drop for TcpCommunicator {
    /// Peers waiting for this rank learn at once that it left.
    fn drop(&mut self) {
        self.mesh.close();
    }
}

fn call(kind: CollectiveKind, count: usize, op: Option<ReduceOp>, root: Option<usize>) -> Call {
    Call {
        kind,
        count,
        op,
        root,
        meet: None,
    }
}

impl Communicator for TcpCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.n()
    }

    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let c = call(CollectiveKind::AllReduce, buf.len(), Some(op), None);
        let own = buf.to_vec();
        let got = self.exchange(c, None, |_| &own)?;
        reduce_in_rank_order(&self.in_rank_order(&got, &own), op, buf);
        Ok(())
    }

    fn all_gather(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        let c = call(CollectiveKind::AllGather, input.len(), None, None);
        let got = self.exchange(c, Some(output.len()), |_| input)?;
        let m = input.len();
        for (r, part) in self.in_rank_order(&got, input).into_iter().enumerate() {
            output[r * m..(r + 1) * m].copy_from_slice(part);
        }
        Ok(())
    }

    fn reduce_scatter(&self, input: &[f32], output: &mut [f32], op: ReduceOp) -> Result<()> {
        let n = self.n();
        let c = call(CollectiveKind::ReduceScatter, input.len(), Some(op), None);
        let got = self.exchange(c, Some(output.len()), |peer| Self::chunk(input, n, peer))?;
        let own = Self::chunk(input, n, self.rank);
        reduce_in_rank_order(&self.in_rank_order(&got, own), op, output);
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let c = call(CollectiveKind::Broadcast, buf.len(), None, Some(root));
        let own = if root == self.rank {
            buf.to_vec()
        } else {
            Vec::new()
        };
        let got = self.exchange(c, None, |_| &own)?;
        if root != self.rank
            && let Some(data) = got.get(root).and_then(|d| d.as_deref())
        {
            buf.copy_from_slice(data);
        }
        Ok(())
    }

    fn reduce(&self, buf: &mut [f32], root: usize, op: ReduceOp) -> Result<()> {
        let c = call(CollectiveKind::Reduce, buf.len(), Some(op), Some(root));
        let own = buf.to_vec();
        let empty: &[f32] = &[];
        let got = self.exchange(c, None, |peer| if peer == root { &own } else { empty })?;
        if root == self.rank {
            reduce_in_rank_order(&self.in_rank_order(&got, &own), op, buf);
        }
        Ok(())
    }

    fn all_to_all(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        let n = self.n();
        let c = call(CollectiveKind::AllToAll, input.len(), None, None);
        let got = self.exchange(c, Some(output.len()), |peer| Self::chunk(input, n, peer))?;
        let own = Self::chunk(input, n, self.rank);
        let m = own.len();
        for (r, part) in self.in_rank_order(&got, own).into_iter().enumerate() {
            output[r * m..(r + 1) * m].copy_from_slice(part);
        }
        Ok(())
    }

    fn send(&self, buf: &[f32], to: usize, tag: u64) -> Result<()> {
        check_peer(&self.ranks, to, "send to", tag)?;
        let data = buf.to_vec();
        if to == self.rank {
            // A message to oneself never touches the network.
            file(&self.mesh.inbox, to, Frame::Message { tag, data });
            return Ok(());
        }
        self.mesh.send(to, &Frame::Message { tag, data });
        Ok(())
    }

    fn recv(&self, buf: &mut [f32], from: usize, tag: u64) -> Result<()> {
        check_peer(&self.ranks, from, "recv from", tag)?;
        let desc = describe_recv(&self.ranks, from, tag, buf.len());
        let key = (from, Slot::Tag(tag));
        let deadline = Instant::now() + self.timeout;
        let inbox = &self.mesh.inbox;
        let mut st = inbox.lock();
        let message = loop {
            if let Some(queue) = st.frames.get_mut(&key) {
                let message = queue.pop_front().map(|m| m.1).unwrap_or_default();
                if queue.is_empty() {
                    st.frames.remove(&key);
                }
                break message;
            }
            let peer = self.ranks[from];
            if let Some(earlier) = &st.failed {
                return Err(collective_error(format!(
                    "{desc} cannot complete: the group failed earlier: {earlier}"
                )));
            }
            if let Some(why) = &st.gone[from] {
                return Err(collective_error(format!(
                    "{desc} cannot complete: rank {peer} left the group without sending it ({why})"
                )));
            }
            let (next, waiting) = inbox.wait(st, deadline);
            st = next;
            if !waiting {
                return Err(collective_error(format!(
                    "{desc} timed out after {:?}: rank {peer} sent nothing with tag {tag}",
                    self.timeout
                )));
            }
        };
        drop(st);
        deliver(&message, buf, || desc)
    }

    fn barrier(&self) -> Result<()> {
        let c = call(CollectiveKind::Barrier, 0, None, None);
        self.exchange(c, None, |_| &[]).map(|_| ())
    }

    fn abort(&self, reason: &str) {
        let message = format!("rank {} failed: {reason}", self.global_rank());
        let _ = self.fail(message);
    }
}
