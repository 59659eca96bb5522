//! `GpuGroup`: collectives between virtual devices that share one GPU, done on the GPU without
//! NCCL (NCCL refuses two ranks on one device). The ranks are threads of this process; their
//! buffers live in the one GPU's memory, so a rank reads its peers' buffers directly.
//!
//! Protocol, per collective. Each rank makes its communication stream wait for the last
//! writes to its buffers and synchronises it, then meets the others through an in-process
//! group (`LocalCommunicator::meet`: the same matching, timeout and failure reports as the
//! host engine) exchanging device addresses. It then enqueues its share of the work on its
//! own stream (a rank-ordered reduction of its chunk, copies out of its peers' memory),
//! synchronises, and meets again before anyone overwrites memory a peer may still read.
//! All-reduce is reduce-scatter then all-gather: each rank reduces 1/N of the bucket, in rank
//! order, so every element is folded exactly as the CPU engine folds it.
//!
//! Point-to-point: `send` copies the buffer (on the sender's stream) into memory the group
//! holds and posts its address through the in-process group's tag-matched mailbox; `recv`
//! takes it and copies it into the receiver's buffer.

use super::plan::{self, MAX_PEERS};
use super::{collective, describe};
use crate::buffer::{CudaBuffer, Data};
use crate::device::driver;
use crate::kernels;
use crate::loader;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtrMut, DeviceRepr, LaunchConfig,
    PushKernelArg,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_core::Result;
use weft_core::collectives::{
    CollectiveKind, Communicator, DeviceCommunicator, LocalCommunicator, LocalGroup, ReduceOp,
    u64s_to_words, words_to_u64s,
};
use weft_core::ir::DType;

/// Sent copies not yet received, by device address (the mailbox carries addresses).
type InFlight = Arc<Mutex<HashMap<u64, Data>>>;

/// One rank's handle on a group of virtual devices sharing one GPU.
pub struct GpuGroup {
    /// The rendezvous and failure reports; also the tag-matched mailbox of `send`.
    local: LocalCommunicator,
    /// This rank's communication stream, apart from compute so reduction overlaps backward.
    stream: Arc<CudaStream>,
    reduce: CudaFunction,
    /// This rank's chunk of an all-reduce, kept between calls.
    scratch: Mutex<Option<CudaSlice<f32>>>,
    in_flight: InFlight,
}

/// Up to `MAX_PEERS` buffer addresses, passed to the kernel by value (`struct Peers`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Peers([u64; MAX_PEERS]);

// SAFETY: plain old data with the layout of collective.cu's `struct Peers`.
unsafe impl DeviceRepr for Peers {}

impl GpuGroup {
    /// Handles for every rank of a group over global `ranks` (all hosted here, all on GPU
    /// `ordinal`), in group-rank order.
    pub fn create(ordinal: usize, ranks: &[usize], timeout: Duration) -> Result<Vec<GpuGroup>> {
        loader::require(&[loader::Lib::Driver, loader::Lib::Nvrtc], "a GPU group")?;
        let locals = LocalGroup::with_ranks(ranks, timeout)?;
        loader::guard("GPU group", || {
            let ctx = CudaContext::new(ordinal).map_err(|e| driver("context", e))?;
            let (major, minor) = ctx
                .compute_capability()
                .map_err(|e| driver("compute capability", e))?;
            let module = kernels::MODULES
                .iter()
                .find(|m| m.name == "collective")
                .ok_or_else(|| weft_core::Error::internal("no collective kernel module"))?;
            let ptx = kernels::compile(module, &format!("sm_{major}{minor}"))?;
            let loaded = ctx
                .load_module(ptx)
                .map_err(|e| driver("loading module collective", e))?;
            let reduce = loaded
                .load_function("collective_reduce_f32")
                .map_err(|e| driver("kernel collective_reduce_f32", e))?;
            let in_flight = InFlight::default();
            locals
                .into_iter()
                .map(|local| {
                    Ok(GpuGroup {
                        local,
                        stream: ctx.new_stream().map_err(|e| driver("group stream", e))?,
                        reduce: reduce.clone(),
                        scratch: Mutex::new(None),
                        in_flight: in_flight.clone(),
                    })
                })
                .collect()
        })
    }

    fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver("communication stream", e))
    }

    /// `bytes` from device address `src` to `dst`, on this rank's stream.
    fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        // Raw driver calls use the calling thread's context (a reducer thread has none yet).
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| driver("context", e))?;
        // SAFETY: both ranges lie in live buffers of the group (lengths checked before the
        // meeting; peers keep theirs until the closing meeting).
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream())
        }
        .map_err(|e| driver("device-to-device copy", e))
    }

    /// `out[..len]` = the rank-ordered `op` of `len` f32 at each address of `srcs`.
    fn reduce_into(&self, srcs: &[u64], out: u64, len: usize, op: ReduceOp) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let passes = plan::passes(srcs.len());
        let blocks = len.div_ceil(256).clamp(1, 1 << 16) as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        for (i, pass) in passes.iter().enumerate() {
            let mut peers = Peers([0; MAX_PEERS]);
            peers.0[..pass.len()].copy_from_slice(&srcs[pass.clone()]);
            let count = pass.len() as i32;
            let n = len as i64;
            let op_max = i32::from(op == ReduceOp::Max);
            let first = i32::from(i == 0);
            let last = i + 1 == passes.len();
            let divide = if last && op == ReduceOp::Mean {
                srcs.len() as i32
            } else {
                0
            };
            let mut b = self.stream.launch_builder(&self.reduce);
            b.arg(&peers)
                .arg(&count)
                .arg(&out)
                .arg(&n)
                .arg(&op_max)
                .arg(&first)
                .arg(&divide);
            // SAFETY: the arguments mirror collective_reduce_f32's signature; every address
            // holds `len` f32 (checked before the meeting).
            unsafe { b.launch(cfg) }.map_err(|e| driver("collective_reduce_f32", e))?;
        }
        Ok(())
    }

    /// This rank's scratch of at least `len` f32.
    fn scratch(&self, len: usize) -> Result<std::sync::MutexGuard<'_, Option<CudaSlice<f32>>>> {
        let mut s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if s.as_ref().is_none_or(|x| x.len() < len) {
            *s = None;
            let fresh = self
                .stream
                .alloc_zeros::<f32>(len.max(1))
                .map_err(|e| driver("collective scratch", e))?;
            *s = Some(fresh);
        }
        Ok(s)
    }

    fn check(&self, kind: CollectiveKind, input: usize, output: usize) -> Result<()> {
        super::check(
            "GPU",
            self.local.group_ranks(),
            kind,
            (input, Some(output)),
            None,
        )
    }
}

fn f32_only(kind: CollectiveKind, b: &CudaBuffer) -> Result<()> {
    match b.dtype() {
        DType::F32 => Ok(()),
        d => Err(collective(format!(
            "{kind} on a GPU group reduces f32 buffers, got {d}"
        ))),
    }
}

/// The bytes of `n` elements of `b`'s dtype.
fn bytes(b: &CudaBuffer, n: usize) -> usize {
    n * b.dtype().size_bytes()
}

impl DeviceCommunicator<CudaBuffer> for GpuGroup {
    fn rank(&self) -> usize {
        self.local.rank()
    }

    fn size(&self) -> usize {
        self.local.size()
    }

    fn engine(&self) -> &'static str {
        "gpu-group"
    }

    fn all_reduce(&self, bufs: &mut [&mut CudaBuffer], op: ReduceOp) -> Result<()> {
        let kind = CollectiveKind::AllReduce;
        bufs.iter().try_for_each(|b| f32_only(kind, b))?;
        let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
        let total: usize = lens.iter().sum();
        let (n, me) = (self.size(), self.rank());
        let mine = plan::chunk(total, n, me);
        let s = &self.stream;
        let mut scratch = self.scratch(mine.len())?;
        let scratch = scratch
            .as_mut()
            .ok_or_else(|| weft_core::Error::internal("no collective scratch"))?;
        // The guards make this stream wait for the buffers' last writes now, and the compute
        // stream wait for these writes later.
        let (sp, _sg) = scratch.device_ptr_mut(s);
        let mut ptrs = Vec::with_capacity(bufs.len());
        let mut guards = Vec::with_capacity(bufs.len());
        for b in bufs.iter_mut() {
            let (p, g) = b.data_mut().ptr_mut(s);
            ptrs.push(p);
            guards.push(g);
        }
        self.sync()?;
        let tokens: Vec<u64> = std::iter::once(sp).chain(ptrs.iter().copied()).collect();
        let all = self.local.meet(kind, total, Some(op), &tokens)?;
        let per = tokens.len();
        // Phase 1: this rank's chunk, folded over the ranks in order, into its scratch.
        for seg in plan::segments(&lens, mine) {
            let off = 4 * seg.within.start as u64;
            let srcs: Vec<u64> = (0..n)
                .map(|r| all[r * per + 1 + seg.buffer] + off)
                .collect();
            self.reduce_into(&srcs, sp + 4 * seg.at as u64, seg.within.len(), op)?;
        }
        self.sync()?;
        self.local.meet(kind, total, Some(op), &[])?;
        // Phase 2: every rank's chunk, from its scratch, into this rank's buffers.
        for r in 0..n {
            for seg in plan::segments(&lens, plan::chunk(total, n, r)) {
                let dst = ptrs[seg.buffer] + 4 * seg.within.start as u64;
                self.copy(dst, all[r * per] + 4 * seg.at as u64, 4 * seg.within.len())?;
            }
        }
        self.sync()?;
        // Nobody reuses its scratch or buffers until every rank has copied out of them.
        self.local.meet(kind, total, Some(op), &[])?;
        Ok(())
    }

    fn all_gather(&self, input: &CudaBuffer, output: &mut CudaBuffer) -> Result<()> {
        let kind = CollectiveKind::AllGather;
        self.check(kind, input.len(), output.len())?;
        same_dtype(kind, input, output)?;
        let s = &self.stream;
        let (ip, _ig) = input.data().ptr(s);
        let (op_, _og) = output.data_mut().ptr_mut(s);
        self.sync()?;
        let all = self.local.meet(kind, input.len(), None, &[ip])?;
        let chunk = bytes(input, input.len());
        for (k, &src) in all.iter().enumerate() {
            self.copy(op_ + (k * chunk) as u64, src, chunk)?;
        }
        self.sync()?;
        self.local.meet(kind, input.len(), None, &[])?;
        Ok(())
    }

    fn reduce_scatter(
        &self,
        input: &CudaBuffer,
        output: &mut CudaBuffer,
        op: ReduceOp,
    ) -> Result<()> {
        let kind = CollectiveKind::ReduceScatter;
        self.check(kind, input.len(), output.len())?;
        f32_only(kind, input)?;
        f32_only(kind, output)?;
        let s = &self.stream;
        let m = output.len();
        let (ip, _ig) = input.data().ptr(s);
        let (out, _og) = output.data_mut().ptr_mut(s);
        self.sync()?;
        let all = self.local.meet(kind, input.len(), Some(op), &[ip])?;
        let off = (4 * m * self.rank()) as u64;
        let srcs: Vec<u64> = all.iter().map(|&p| p + off).collect();
        self.reduce_into(&srcs, out, m, op)?;
        self.sync()?;
        self.local.meet(kind, input.len(), Some(op), &[])?;
        Ok(())
    }

    fn all_to_all(&self, input: &CudaBuffer, output: &mut CudaBuffer) -> Result<()> {
        let kind = CollectiveKind::AllToAll;
        self.check(kind, input.len(), output.len())?;
        same_dtype(kind, input, output)?;
        let s = &self.stream;
        let (ip, _ig) = input.data().ptr(s);
        let (out, _og) = output.data_mut().ptr_mut(s);
        self.sync()?;
        let all = self.local.meet(kind, input.len(), None, &[ip])?;
        let chunk = bytes(input, input.len() / self.size());
        let mine = (chunk * self.rank()) as u64;
        for (k, &src) in all.iter().enumerate() {
            self.copy(out + (k * chunk) as u64, src + mine, chunk)?;
        }
        self.sync()?;
        self.local.meet(kind, input.len(), None, &[])?;
        Ok(())
    }

    fn send(&self, buf: &CudaBuffer, to: usize, tag: u64) -> Result<()> {
        let s = &self.stream;
        let copy = loader::guard("GPU group send", || {
            let r = match buf.data() {
                Data::F32(x) => s.clone_dtod(x).map(Data::F32),
                Data::I32(x) => s.clone_dtod(x).map(Data::I32),
                Data::BF16(x) => s.clone_dtod(x).map(Data::BF16),
                Data::F16(x) => s.clone_dtod(x).map(Data::F16),
            };
            r.map_err(|e| driver("send copy", e))
        })?;
        self.sync()?;
        let addr = copy.ptr(s).0;
        let len = copy.len() as u64;
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, copy);
        let sent = self.local.send(&u64s_to_words(&[addr, len]), to, tag);
        if sent.is_err() {
            self.in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&addr);
        }
        sent
    }

    fn recv(&self, buf: &mut CudaBuffer, from: usize, tag: u64) -> Result<()> {
        let mut token = [0.0f32; 4];
        self.local.recv(&mut token, from, tag)?;
        let [addr, len] = words_to_u64s(&token)[..] else {
            return Err(weft_core::Error::internal("a GPU group message token"));
        };
        let message = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr)
            .ok_or_else(|| weft_core::Error::internal("a GPU group message went missing"))?;
        if len as usize != buf.len() || message.dtype() != buf.dtype() {
            return Err(collective(format!(
                "recv from group rank {from} (tag {tag}) on GPU group {}: the message is {} x {} \
                 but the buffer is {} x {}",
                describe(self.local.group_ranks()),
                len,
                message.dtype(),
                buf.len(),
                buf.dtype()
            )));
        }
        let s = &self.stream;
        let size = bytes(buf, buf.len());
        let (dst, _g) = buf.data_mut().ptr_mut(s);
        self.copy(dst, addr, size)?;
        // The copy must finish before `message` is freed.
        self.sync()?;
        drop(message);
        Ok(())
    }

    fn abort(&self, reason: &str) {
        self.local.abort(reason);
    }
}

fn same_dtype(kind: CollectiveKind, input: &CudaBuffer, output: &CudaBuffer) -> Result<()> {
    if input.dtype() == output.dtype() {
        return Ok(());
    }
    Err(collective(format!(
        "{kind}: input is {} but output is {}",
        input.dtype(),
        output.dtype()
    )))
}
