//! Tagged point-to-point over NCCL. NCCL matches a pair's messages by order alone; the
//! executor's receives come in the order its program needs tensors, which need not be the
//! order the peer sent them. So every message travels as a header (tag, length, dtype) and a
//! payload; a receive takes the pair's messages in order until it meets its tag, keeping the
//! others for their own receives. Sends are enqueued and not waited for (buffered, as the trait
//! asks): the buffer's event keeps later writes behind the send, and sends to higher and lower
//! ranks use two communicators, so two ranks sending to each other never block each other.

use super::collective;
use super::nccl::{NcclCommunicator, dtype_of, grouped, nccl_error, ptr_of};
use crate::buffer::{CudaBuffer, Data};
use crate::device::driver;
use crate::loader;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use cudarc::nccl::{result as nccl, sys};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use weft_core::Result;
use weft_core::ir::DType;

/// Messages received ahead of their receive, by (sender, tag), oldest first.
pub(super) type Stash = Mutex<HashMap<(usize, u64), VecDeque<Data>>>;

/// A header's words: tag, element count, dtype.
const HEADER: usize = 3;

fn code_of(d: DType) -> u64 {
    match d {
        DType::F32 => 0,
        DType::I32 => 1,
        DType::BF16 => 2,
        DType::F16 => 3,
    }
}

fn dtype_from(code: u64) -> Option<DType> {
    [DType::F32, DType::I32, DType::BF16, DType::F16]
        .get(code as usize)
        .copied()
}

/// A fresh device buffer of `len` elements of `dtype` on `s`.
fn alloc(s: &std::sync::Arc<CudaStream>, dtype: DType, len: usize) -> Result<Data> {
    let r = match dtype {
        DType::F32 => s.alloc_zeros::<f32>(len).map(Data::F32),
        DType::I32 => s.alloc_zeros::<i32>(len).map(Data::I32),
        DType::BF16 => s.alloc_zeros::<u16>(len).map(Data::BF16),
        DType::F16 => s.alloc_zeros::<u16>(len).map(Data::F16),
    };
    r.map_err(|e| driver("NCCL message buffer", e))
}

impl NcclCommunicator {
    pub(super) fn send_tagged(&self, buf: &CudaBuffer, to: usize, tag: u64) -> Result<()> {
        let group = super::describe(&self.ranks);
        if to >= self.size() {
            return Err(collective(format!(
                "send to group rank {to} (tag {tag}) on NCCL group {group}: the group has {} \
                 ranks",
                self.size()
            )));
        }
        let (comm, s) = self.lane(to, true);
        loader::guard("NCCL send", || {
            let words = [tag, buf.len() as u64, code_of(buf.dtype())];
            let header: CudaSlice<u64> = s
                .clone_htod(&words)
                .map_err(|e| driver("NCCL message header", e))?;
            let (hp, _hg) = header.device_ptr(s);
            let (bp, _bg) = ptr_of(buf.data(), s);
            let (len, t) = (buf.len(), dtype_of(buf.dtype()));
            let peer = to as i32;
            grouped(|| {
                // SAFETY: both buffers stay valid until the send completes: the header is freed
                // in stream order, and `buf`'s next writer waits for the event the guard records.
                unsafe {
                    let u64s = sys::ncclDataType_t::ncclUint64;
                    nccl::send(hp as _, HEADER, u64s, peer, comm.get()?, s.cu_stream() as _)
                        .map_err(|e| nccl_error("send header", e))?;
                    nccl::send(bp as _, len, t, peer, comm.get()?, s.cu_stream() as _)
                        .map_err(|e| nccl_error("send", e))?;
                }
                Ok(())
            })
        })
    }

    pub(super) fn recv_tagged(&self, buf: &mut CudaBuffer, from: usize, tag: u64) -> Result<()> {
        let (len, dtype) = (buf.len(), buf.dtype());
        let peer = self.ranks.get(from).copied().unwrap_or(from);
        let group = super::describe(&self.ranks);
        let desc =
            || format!("recv from rank {peer} (tag {tag}, {len} x {dtype}) on NCCL group {group}");
        if from >= self.size() {
            return Err(collective(format!(
                "{}: the group has {} ranks",
                desc(),
                self.size()
            )));
        }
        let (comm, s) = self.lane(from, false);
        loader::guard("NCCL recv", || {
            loop {
                let early = self
                    .stash
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&(from, tag))
                    .and_then(VecDeque::pop_front);
                if let Some(data) = early {
                    return self.deliver(&data, buf, s, &desc);
                }
                // The pair's next message, whatever its tag.
                let mut header = s
                    .alloc_zeros::<u64>(HEADER)
                    .map_err(|e| driver("NCCL message header", e))?;
                {
                    let (hp, _hg) = header.device_ptr_mut(s);
                    let u64s = sys::ncclDataType_t::ncclUint64;
                    // SAFETY: a HEADER-word buffer, alive until the wait.
                    unsafe {
                        nccl::recv(
                            hp as _,
                            HEADER,
                            u64s,
                            from as i32,
                            comm.get()?,
                            s.cu_stream() as _,
                        )
                    }
                    .map_err(|e| nccl_error("recv header", e))?;
                }
                self.wait(s, desc)?;
                let words = s
                    .clone_dtoh(&header)
                    .map_err(|e| driver("NCCL message header", e))?;
                let (t, n) = (words[0], words[1] as usize);
                let d = dtype_from(words[2]).ok_or_else(|| {
                    collective(format!(
                        "{}: a message header names dtype {}",
                        desc(),
                        words[2]
                    ))
                })?;
                let mut data = alloc(s, d, n)?;
                {
                    let (dp, _dg) = data.ptr_mut(s);
                    // SAFETY: the header said `n` elements of `d`; `data` holds them.
                    unsafe {
                        nccl::recv(
                            dp as _,
                            n,
                            dtype_of(d),
                            from as i32,
                            comm.get()?,
                            s.cu_stream() as _,
                        )
                    }
                    .map_err(|e| nccl_error("recv", e))?;
                }
                self.wait(s, desc)?;
                if t == tag {
                    return self.deliver(&data, buf, s, &desc);
                }
                let mut stash = self.stash.lock().unwrap_or_else(|p| p.into_inner());
                stash.entry((from, t)).or_default().push_back(data);
            }
        })
    }

    /// Copy a received message into the receive's buffer, after checking it fits.
    fn deliver(
        &self,
        data: &Data,
        buf: &mut CudaBuffer,
        s: &CudaStream,
        desc: &dyn Fn() -> String,
    ) -> Result<()> {
        if data.len() != buf.len() || data.dtype() != buf.dtype() {
            return Err(collective(format!(
                "{}: the message is {} x {}",
                desc(),
                data.len(),
                data.dtype()
            )));
        }
        let bytes = buf.len() * buf.dtype().size_bytes();
        let (src, _sg) = data.ptr(s);
        let (dst, _dg) = buf.data_mut().ptr_mut(s);
        if bytes > 0 {
            s.context()
                .bind_to_thread()
                .map_err(|e| driver("context", e))?;
            // SAFETY: both buffers hold `bytes`; the message is freed in stream order after.
            unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, s.cu_stream()) }
                .map_err(|e| driver("NCCL message copy", e))?;
        }
        Ok(())
    }
}
