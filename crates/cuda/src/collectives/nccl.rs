//! `NcclCommunicator`: a device group over distinct GPUs (in this process or across
//! processes) through NCCL, loaded at run time as `libnccl.so.2`. One NCCL communicator per
//! group of the plan, on its own stream, so a gradient bucket's all-reduce overlaps backward;
//! a bucket's tensors go in one NCCL group call (no packing copy).
//!
//! What NCCL does not give, weft adds:
//! - a watchdog: a collective that does not complete within `communication.timeout_s` aborts
//!   the communicator and fails with the collective's name, sequence number, size and group
//!   (NCCL cannot say which rank is missing; the process group reports a dead process);
//! - tags: NCCL delivers a pair's messages in send order only, so every message is preceded by
//!   a header (tag, length, dtype); a receive drains the pair's messages in order, keeping those
//!   with other tags until they are asked for (`nccl_p2p`), and sends are not waited for, so
//!   the pipeline's receive order need not be its send order;
//! - deadlock-free pipelines: sends to higher ranks and to lower ones go on two communicators
//!   (two streams), so two ranks sending to each other never queue behind each other.
//!
//! Reductions are NCCL's (ring or tree order), so unlike the CPU and GPU-group engines they are
//! not bit-identical to a one-device run; Mean is `ncclAvg`, and Max follows NCCL's NaN rules.

use super::{collective, describe};
use crate::buffer::{CudaBuffer, Data};
use crate::device::driver;
use crate::loader;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result as nccl, sys};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weft_core::collectives::{CollectiveKind, DeviceCommunicator, GroupSpec, ReduceOp};
use weft_core::ir::DType;
use weft_core::{Error, Result};

/// A raw NCCL communicator. Aborting frees it, so it is aborted once: by `abort` (a timeout, a
/// failed peer) or on drop, never finalised (a group that failed must not wait for its peers
/// on the way out). Calls after an abort fail by name instead of using a freed handle.
pub(super) struct Raw(std::sync::Mutex<sys::ncclComm_t>);

// SAFETY: NCCL communicators may be used from any thread; weft issues each one's calls from
// one thread at a time (its owner's reducer or executor), and the handle sits behind a mutex.
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

impl Raw {
    fn new(comm: sys::ncclComm_t) -> Raw {
        Raw(std::sync::Mutex::new(comm))
    }

    /// The live handle, or an error once the communicator has been aborted.
    pub(super) fn get(&self) -> Result<sys::ncclComm_t> {
        let comm = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        if comm.is_null() {
            return Err(collective(
                "the NCCL communicator was aborted earlier (a timeout or a failed rank)".into(),
            ));
        }
        Ok(comm)
    }

    /// Abort and free the communicator, once.
    pub(super) fn abort(&self) {
        let mut comm = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !comm.is_null() {
            let c = std::mem::replace(&mut *comm, std::ptr::null_mut());
            // SAFETY: the handle came from an NCCL init and is aborted only here.
            let _ = std::panic::catch_unwind(|| unsafe { nccl::comm_abort(c) });
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.abort();
    }
}

/// One rank's handle on an NCCL group.
pub struct NcclCommunicator {
    /// Collectives, and sends to higher ranks / receives from lower ones.
    pub(super) up: Raw,
    /// Sends to lower ranks / receives from higher ones.
    pub(super) down: Raw,
    pub(super) up_stream: Arc<CudaStream>,
    down_stream: Arc<CudaStream>,
    rank: usize,
    /// Global device ranks, for messages.
    pub(super) ranks: Vec<usize>,
    timeout: Duration,
    calls: AtomicU64,
    /// One process: the number of the latest collective each member started, shared by the
    /// members, so a stuck one names the ranks that did not arrive (NCCL cannot say).
    arrivals: Option<Arc<[AtomicU64]>>,
    /// Messages that arrived before the one a receive asked for (`nccl_p2p`).
    pub(super) stash: super::nccl_p2p::Stash,
    /// Device copies of host slices (`Communicator`, in `nccl_host`), reused between calls.
    pub(super) staging: Arc<crate::buffer::Cache>,
}

pub(super) fn nccl_error(what: &str, e: nccl::NcclError) -> Error {
    Error::Device {
        message: format!("NCCL {what}: {e:?}"),
    }
}

/// Two unique ids (up, down) as bytes, for the store.
fn new_ids() -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(256);
    for _ in 0..2 {
        let id = nccl::get_uniqueid().map_err(|e| nccl_error("unique id", e))?;
        bytes.extend(id.internal.iter().map(|&c| c as u8));
    }
    Ok(bytes)
}

fn ids_of(bytes: &[u8]) -> Result<[sys::ncclUniqueId; 2]> {
    if bytes.len() != 256 {
        return Err(Error::internal(
            "an NCCL unique id from the store is not 128 bytes",
        ));
    }
    let id = |half: &[u8]| {
        let mut internal = [0 as std::ffi::c_char; 128];
        for (d, &s) in internal.iter_mut().zip(half) {
            *d = s as std::ffi::c_char;
        }
        sys::ncclUniqueId { internal }
    };
    Ok([id(&bytes[..128]), id(&bytes[128..])])
}

impl NcclCommunicator {
    /// Handles for `spec.members`, member i on GPU `gpus[i]`. In one process the ids are made
    /// here; across processes the process hosting group rank 0 puts them in the job's store
    /// and the others wait for them there.
    pub fn create(spec: &GroupSpec<'_>, gpus: &[usize]) -> Result<Vec<NcclCommunicator>> {
        loader::require(&[loader::Lib::Nccl], "NCCL device groups")?;
        let what = format!("NCCL {} group {}", spec.purpose, describe(spec.ranks));
        let Some((store, prefix)) = &spec.store else {
            // One process: ncclCommInitAll makes every member at once (no member can be left
            // waiting for one whose set-up failed).
            return loader::guard(&what, || init_all(spec, gpus));
        };
        let ids = loader::guard(&what, || {
            let key = format!("{prefix}/nccl-ids");
            if spec.members.first() == Some(&0) {
                store.set(&key, &new_ids()?)?;
            }
            ids_of(&store.get(&key, spec.timeout)?)
        })?;
        // NCCL's init waits for every rank without a timeout; meet in the store first, so a
        // device whose process never came is named instead of hanging everyone.
        let joined = |r: usize| format!("{prefix}/joined/device{}", spec.ranks[r]);
        for &m in spec.members {
            store.set(&joined(m), b"1")?;
        }
        let keys: Vec<String> = (0..spec.ranks.len()).map(joined).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        store
            .wait(&keys, spec.timeout)
            .map_err(|e| collective(format!("{what} did not form: {e}")))?;
        let n = spec.ranks.len();
        // Every member's init blocks until the whole group has joined: one thread each.
        std::thread::scope(|s| {
            let handles: Vec<_> = spec
                .members
                .iter()
                .zip(gpus)
                .map(|(&m, &gpu)| {
                    let what = &what;
                    s.spawn(move || {
                        loader::guard(what, || {
                            let ctx = context(gpu)?;
                            let raw = ids.map(|id| init_rank(n, m, id));
                            let [up, down] = raw;
                            member(spec, m, &ctx, up?, down?)
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::internal("an NCCL init thread panicked")))
                })
                .collect()
        })
    }

    pub(super) fn size(&self) -> usize {
        self.ranks.len()
    }

    /// Wait for `stream` to finish what this call enqueued, or abort the group after the
    /// timeout naming the collective.
    pub(super) fn wait(&self, stream: &CudaStream, desc: impl Fn() -> String) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        // Raw driver calls use the calling thread's context (a reducer thread has none yet).
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| driver("context", e))?;
        loop {
            // SAFETY: the stream is alive (held by self).
            let r = unsafe { cudarc::driver::sys::cuStreamQuery(stream.cu_stream()) };
            match r {
                cudarc::driver::sys::cudaError_enum::CUDA_SUCCESS => return Ok(()),
                cudarc::driver::sys::cudaError_enum::CUDA_ERROR_NOT_READY => {}
                e => return Err(collective(format!("{}: CUDA error {e:?}", desc()))),
            }
            if Instant::now() >= deadline {
                // Aborting makes the pending kernels return.
                self.up.abort();
                self.down.abort();
                let cause = match self.arrivals {
                    Some(_) => "",
                    None => {
                        " (a rank did not arrive, or died: across processes NCCL cannot tell which)"
                    }
                };
                return Err(collective(format!(
                    "{} did not complete within {:?}{cause}; the group is aborted",
                    desc(),
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Number this call and describe it: "all_reduce #3 (1024 elements) on NCCL group [0,1]",
    /// followed, in one process, by the ranks that have not started it when described.
    pub(super) fn next(&self, kind: CollectiveKind, count: usize) -> impl Fn() -> String + '_ {
        let seq = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(a) = &self.arrivals {
            a[self.rank].store(seq, Ordering::Release);
        }
        move || {
            let group = describe(&self.ranks);
            let late = self
                .arrivals
                .as_deref()
                .map(|a| late_ranks(a, &self.ranks, seq));
            match late.filter(|l| !l.is_empty()) {
                Some(l) => format!(
                    "{kind} #{seq} ({count} elements) on NCCL group {group}: ranks {} did not \
                     arrive",
                    describe(&l)
                ),
                None => format!("{kind} #{seq} ({count} elements) on NCCL group {group}"),
            }
        }
    }

    fn check(&self, kind: CollectiveKind, input: usize, output: usize) -> Result<()> {
        super::check("NCCL", &self.ranks, kind, (input, Some(output)), None)
    }

    /// The communicator and stream a message to (or from) `peer` travels on.
    pub(super) fn lane(&self, peer: usize, sending: bool) -> (&Raw, &Arc<CudaStream>) {
        if (peer > self.rank) == sending {
            (&self.up, &self.up_stream)
        } else {
            (&self.down, &self.down_stream)
        }
    }
}

/// One member's communicators: both NCCL inits on `gpu`, each with its own stream.
fn context(gpu: usize) -> Result<Arc<CudaContext>> {
    let ctx = CudaContext::new(gpu).map_err(|e| driver("context", e))?;
    ctx.bind_to_thread().map_err(|e| driver("context", e))?;
    Ok(ctx)
}

/// This process's communicator of group rank `rank` (blocks until every rank has joined).
fn init_rank(n: usize, rank: usize, id: sys::ncclUniqueId) -> Result<Raw> {
    let mut comm = std::mem::MaybeUninit::uninit();
    // SAFETY: `comm` is written by a successful init before it is read.
    unsafe {
        nccl::comm_init_rank(comm.as_mut_ptr(), n as i32, id, rank as i32)
            .map_err(|e| nccl_error("init", e))?;
        Ok(Raw::new(comm.assume_init()))
    }
}

/// The global ranks of the members that have not started collective `seq`.
fn late_ranks(arrivals: &[AtomicU64], ranks: &[usize], seq: u64) -> Vec<usize> {
    arrivals
        .iter()
        .zip(ranks)
        .filter(|(a, _)| a.load(Ordering::Acquire) < seq)
        .map(|(_, &r)| r)
        .collect()
}

/// Every member of a one-process group, both communicators, with ncclCommInitAll.
fn init_all(spec: &GroupSpec<'_>, gpus: &[usize]) -> Result<Vec<NcclCommunicator>> {
    let devices: Vec<i32> = gpus.iter().map(|&g| g as i32).collect();
    let mut made = Vec::new();
    for _ in 0..2 {
        let mut comms = vec![std::ptr::null_mut(); devices.len()];
        // SAFETY: `comms` has one slot per device, written by a successful init.
        unsafe { nccl::comm_init_all(comms.as_mut_ptr(), devices.len() as i32, devices.as_ptr()) }
            .map_err(|e| nccl_error("init", e))?;
        made.push(comms.into_iter().map(Raw::new).collect::<Vec<_>>());
    }
    let downs = made.pop().unwrap_or_default();
    let ups = made.pop().unwrap_or_default();
    let arrivals: Arc<[AtomicU64]> = gpus.iter().map(|_| AtomicU64::new(0)).collect();
    ups.into_iter()
        .zip(downs)
        .zip(gpus)
        .enumerate()
        .map(|(m, ((up, down), &gpu))| {
            let made = member(spec, m, &context(gpu)?, up, down)?;
            Ok(NcclCommunicator {
                arrivals: Some(arrivals.clone()),
                ..made
            })
        })
        .collect()
}

fn member(
    spec: &GroupSpec<'_>,
    rank: usize,
    ctx: &Arc<CudaContext>,
    up: Raw,
    down: Raw,
) -> Result<NcclCommunicator> {
    let stream = || ctx.new_stream().map_err(|e| driver("NCCL stream", e));
    Ok(NcclCommunicator {
        up,
        down,
        up_stream: stream()?,
        down_stream: stream()?,
        rank,
        ranks: spec.ranks.to_vec(),
        timeout: spec.timeout,
        calls: AtomicU64::new(0),
        arrivals: None,
        stash: Default::default(),
        staging: Default::default(),
    })
}

pub(super) fn dtype_of(d: DType) -> sys::ncclDataType_t {
    match d {
        DType::F32 => sys::ncclDataType_t::ncclFloat32,
        DType::I32 => sys::ncclDataType_t::ncclInt32,
        DType::BF16 => sys::ncclDataType_t::ncclBfloat16,
        DType::F16 => sys::ncclDataType_t::ncclFloat16,
    }
}

pub(super) fn op_of(op: ReduceOp) -> sys::ncclRedOp_t {
    match op {
        ReduceOp::Sum => sys::ncclRedOp_t::ncclSum,
        ReduceOp::Mean => sys::ncclRedOp_t::ncclAvg,
        ReduceOp::Max => sys::ncclRedOp_t::ncclMax,
    }
}

/// Runs `f` between ncclGroupStart and ncclGroupEnd (the end runs even when `f` fails).
pub(super) fn grouped(f: impl FnOnce() -> Result<()>) -> Result<()> {
    nccl::group_start().map_err(|e| nccl_error("group start", e))?;
    let r = f();
    let end = nccl::group_end().map_err(|e| nccl_error("group end", e));
    r.and(end.map(|_| ()))
}

pub(super) fn ptr_of<'a>(d: &'a Data, s: &'a CudaStream) -> (u64, cudarc::driver::SyncOnDrop<'a>) {
    d.ptr(s)
}

impl DeviceCommunicator<CudaBuffer> for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.ranks.len()
    }

    fn engine(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce(&self, bufs: &mut [&mut CudaBuffer], op: ReduceOp) -> Result<()> {
        let total = bufs.iter().map(|b| b.len()).sum();
        let desc = self.next(CollectiveKind::AllReduce, total);
        let s = &self.up_stream;
        let mut guards = Vec::with_capacity(bufs.len());
        loader::guard("NCCL all_reduce", || {
            grouped(|| {
                for b in bufs.iter_mut() {
                    let (len, t) = (b.len(), dtype_of(b.dtype()));
                    let (p, g) = b.data_mut().ptr_mut(s);
                    guards.push(g);
                    // SAFETY: in-place all-reduce of `len` elements of a live buffer.
                    unsafe {
                        nccl::all_reduce(
                            p as _,
                            p as _,
                            len,
                            t,
                            op_of(op),
                            self.up.get()?,
                            s.cu_stream() as _,
                        )
                    }
                    .map_err(|e| nccl_error("all_reduce", e))?;
                }
                Ok(())
            })
        })?;
        self.wait(s, desc)
    }

    fn all_gather(&self, input: &CudaBuffer, output: &mut CudaBuffer) -> Result<()> {
        self.check(CollectiveKind::AllGather, input.len(), output.len())?;
        let desc = self.next(CollectiveKind::AllGather, input.len());
        let s = &self.up_stream;
        let (ip, _ig) = ptr_of(input.data(), s);
        let (op_, _og) = output.data_mut().ptr_mut(s);
        let t = dtype_of(input.dtype());
        // SAFETY: lengths checked above; both buffers live until the wait.
        unsafe {
            nccl::all_gather(
                ip as _,
                op_ as _,
                input.len(),
                t,
                self.up.get()?,
                s.cu_stream() as _,
            )
        }
        .map_err(|e| nccl_error("all_gather", e))?;
        self.wait(s, desc)
    }

    fn reduce_scatter(
        &self,
        input: &CudaBuffer,
        output: &mut CudaBuffer,
        op: ReduceOp,
    ) -> Result<()> {
        self.check(CollectiveKind::ReduceScatter, input.len(), output.len())?;
        let desc = self.next(CollectiveKind::ReduceScatter, input.len());
        let s = &self.up_stream;
        let (m, t) = (output.len(), dtype_of(input.dtype()));
        let (ip, _ig) = ptr_of(input.data(), s);
        let (out, _og) = output.data_mut().ptr_mut(s);
        // SAFETY: lengths checked above; both buffers live until the wait.
        unsafe {
            nccl::reduce_scatter(
                ip as _,
                out as _,
                m,
                t,
                op_of(op),
                self.up.get()?,
                s.cu_stream() as _,
            )
        }
        .map_err(|e| nccl_error("reduce_scatter", e))?;
        self.wait(s, desc)
    }

    fn all_to_all(&self, input: &CudaBuffer, output: &mut CudaBuffer) -> Result<()> {
        self.check(CollectiveKind::AllToAll, input.len(), output.len())?;
        let desc = self.next(CollectiveKind::AllToAll, input.len());
        let s = &self.up_stream;
        let (ip, _ig) = ptr_of(input.data(), s);
        let (out, _og) = output.data_mut().ptr_mut(s);
        let m = input.len() / self.size();
        let (t, bytes) = (dtype_of(input.dtype()), m * input.dtype().size_bytes());
        grouped(|| {
            for k in 0..self.size() {
                let off = (k * bytes) as u64;
                // SAFETY: chunk k of both buffers (lengths checked above).
                unsafe {
                    nccl::send(
                        (ip + off) as _,
                        m,
                        t,
                        k as i32,
                        self.up.get()?,
                        s.cu_stream() as _,
                    )
                    .map_err(|e| nccl_error("all_to_all send", e))?;
                    nccl::recv(
                        (out + off) as _,
                        m,
                        t,
                        k as i32,
                        self.up.get()?,
                        s.cu_stream() as _,
                    )
                    .map_err(|e| nccl_error("all_to_all recv", e))?;
                }
            }
            Ok(())
        })?;
        self.wait(s, desc)
    }

    fn send(&self, buf: &CudaBuffer, to: usize, tag: u64) -> Result<()> {
        self.send_tagged(buf, to, tag)
    }

    fn recv(&self, buf: &mut CudaBuffer, from: usize, tag: u64) -> Result<()> {
        self.recv_tagged(buf, from, tag)
    }

    fn abort(&self, _reason: &str) {
        // Peers' pending collectives on this group fail; later calls here fail by name.
        self.up.abort();
        self.down.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::late_ranks;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_ranks_that_have_not_started_a_collective_are_named() {
        let arrivals = [3, 2, 3, 0].map(AtomicU64::new);
        assert_eq!(late_ranks(&arrivals, &[4, 5, 6, 7], 3), vec![5, 7]);
        assert_eq!(late_ranks(&arrivals, &[4, 5, 6, 7], 2), vec![7]);
        assert!(late_ranks(&arrivals[..1], &[4], 3).is_empty());
    }
}
