//! Collectives over a backend's own buffers. The `Communicator` trait moves host f32 slices;
//! a GPU engine (device-to-device copies between virtual devices on one GPU, NCCL between
//! GPUs and hosts) moves device memory without staging it through the host. The session uses
//! a `DeviceCommunicator` where the engine offers one (pipeline sends, fused gradient
//! all-reduce) and the host communicators for the rest, so every engine keeps the same
//! contract: the same calls in the same order on every rank, rank-ordered reductions where the
//! engine can give them, and `Error::Collective` naming the collective instead of a hang.
//!
//! `HostBuffers` is the host engine behind this interface (CPU buffers are host memory): what
//! the session's device paths are tested with on machines without a GPU.

use std::time::Duration;

use super::communicator::{Communicator, ReduceOp, collective_error};
use super::tcp::StoreClient;
use crate::error::Result;
use crate::tensor::HostData;

/// One rank's handle on a group whose data moves in the backend's buffers (`Buf`). Ranks are
/// group ranks, as in `Communicator`. Buffers keep their dtype: 16-bit activations travel as
/// 16-bit words.
pub trait DeviceCommunicator<Buf>: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The engine, for reports ("gpu-group", "nccl", "host-buffers").
    fn engine(&self) -> &'static str;
    /// Every rank's `bufs` (the same count and lengths on every rank) become the element-wise
    /// reduction over the ranks, as one group call: a fused gradient bucket is reduced
    /// tensor by tensor, with no packing copy.
    fn all_reduce(&self, bufs: &mut [&mut Buf], op: ReduceOp) -> Result<()>;
    /// `output` (size x input) becomes the rank-major concatenation of every rank's `input`.
    fn all_gather(&self, input: &Buf, output: &mut Buf) -> Result<()>;
    /// Reduce every rank's `input` (size x output); rank r gets the r-th chunk.
    fn reduce_scatter(&self, input: &Buf, output: &mut Buf, op: ReduceOp) -> Result<()>;
    /// Chunk j of rank i's `input` becomes chunk i of rank j's `output`.
    fn all_to_all(&self, input: &Buf, output: &mut Buf) -> Result<()>;
    /// Point-to-point send to group rank `to`; messages with the same (sender, receiver, tag)
    /// arrive in send order.
    fn send(&self, buf: &Buf, to: usize, tag: u64) -> Result<()>;
    /// Receive the oldest message from group rank `from` with `tag` into `buf` (same length).
    fn recv(&self, buf: &mut Buf, from: usize, tag: u64) -> Result<()>;
    /// This rank failed outside communication: peers waiting on it fail at once.
    fn abort(&self, reason: &str);
}

/// One group of a layout for an engine to make.
pub struct GroupSpec<'a> {
    /// Global device ranks; group rank i is `ranks[i]`.
    pub ranks: &'a [usize],
    /// The group ranks this process hosts (all of them in one process), in order.
    pub members: &'a [usize],
    /// What the group carries ("pipeline", "gradients"), for messages.
    pub purpose: &'static str,
    pub timeout: Duration,
    /// In a multi-process job: the job's store and a key prefix unique to this group, through
    /// which rendezvous data (NCCL's unique id) passes. Every process makes the same groups in
    /// the same order, so the prefixes agree.
    pub store: Option<(&'a StoreClient, String)>,
}

/// The handles an engine makes for `spec.members`, in order; `None` leaves the group to the
/// host communicators (a layout the engine does not accelerate).
pub type DeviceCommunicators<Buf> = Option<Vec<Box<dyn DeviceCommunicator<Buf>>>>;

/// An engine's maker of device groups (`session::Engine`).
pub type DeviceGroupFactory<'a, Buf> =
    dyn Fn(&GroupSpec<'_>) -> Result<DeviceCommunicators<Buf>> + Sync + 'a;

/// The host engine behind the device interface: CPU buffers (`HostData`) are host memory, so
/// each call is the host communicator's on the buffer in place. 16-bit buffers travel widened
/// to f32 and are rounded back (exact for values that came from 16 bits).
pub struct HostBuffers(pub Box<dyn Communicator>);

impl HostBuffers {
    /// One handle per member of each host group: `LocalGroup` handles wrapped.
    pub fn wrap(
        comms: Vec<impl Communicator + 'static>,
    ) -> Vec<Box<dyn DeviceCommunicator<HostData>>> {
        comms
            .into_iter()
            .map(|c| Box::new(HostBuffers(Box::new(c))) as Box<dyn DeviceCommunicator<HostData>>)
            .collect()
    }
}

/// `buf`'s values as f32, for a host collective.
fn values(buf: &HostData) -> Result<std::borrow::Cow<'_, [f32]>> {
    buf.to_f32().ok_or_else(|| {
        collective_error(format!(
            "collectives take float buffers, got an {} buffer",
            buf.dtype()
        ))
    })
}

/// Overwrite `buf` (any float dtype) with f32 `values`.
fn store(buf: &mut HostData, values: &[f32]) {
    match buf {
        HostData::F32(v) => v.copy_from_slice(values),
        other => crate::tensor::half::narrow_into(values, other),
    }
}

impl DeviceCommunicator<HostData> for HostBuffers {
    fn rank(&self) -> usize {
        self.0.rank()
    }

    fn size(&self) -> usize {
        self.0.size()
    }

    fn engine(&self) -> &'static str {
        "host-buffers"
    }

    fn all_reduce(&self, bufs: &mut [&mut HostData], op: ReduceOp) -> Result<()> {
        // One host call for the group: the buffers packed end to end.
        let mut flat = Vec::new();
        for b in bufs.iter() {
            flat.extend_from_slice(&values(b)?);
        }
        self.0.all_reduce(&mut flat, op)?;
        let mut at = 0;
        for b in bufs.iter_mut() {
            let n = b.len();
            store(b, &flat[at..at + n]);
            at += n;
        }
        Ok(())
    }

    fn all_gather(&self, input: &HostData, output: &mut HostData) -> Result<()> {
        let mut out = vec![0.0; output.len()];
        self.0.all_gather(&values(input)?, &mut out)?;
        store(output, &out);
        Ok(())
    }

    fn reduce_scatter(&self, input: &HostData, output: &mut HostData, op: ReduceOp) -> Result<()> {
        let mut out = vec![0.0; output.len()];
        self.0.reduce_scatter(&values(input)?, &mut out, op)?;
        store(output, &out);
        Ok(())
    }

    fn all_to_all(&self, input: &HostData, output: &mut HostData) -> Result<()> {
        let mut out = vec![0.0; output.len()];
        self.0.all_to_all(&values(input)?, &mut out)?;
        store(output, &out);
        Ok(())
    }

    fn send(&self, buf: &HostData, to: usize, tag: u64) -> Result<()> {
        self.0.send(&values(buf)?, to, tag)
    }

    fn recv(&self, buf: &mut HostData, from: usize, tag: u64) -> Result<()> {
        let mut out = vec![0.0; buf.len()];
        self.0.recv(&mut out, from, tag)?;
        store(buf, &out);
        Ok(())
    }

    fn abort(&self, reason: &str) {
        self.0.abort(reason);
    }
}
