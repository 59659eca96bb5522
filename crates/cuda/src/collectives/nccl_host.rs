//! The NCCL group as a host `Communicator`: each call copies the host slices to the GPU, runs
//! the device collective and copies the result back. What the plan moves in bulk travels as
//! device buffers (`DeviceCommunicator`); this form lets an NCCL group serve any code written
//! against host slices (the step's scalars, checkpoint gathers), with the same checks and words.

use super::nccl::{NcclCommunicator, nccl_error, op_of};
use crate::buffer::{CudaBuffer, Data};
use crate::device::driver;
use cudarc::nccl::{result as nccl, sys};
use weft_core::Result;
use weft_core::collectives::{CollectiveKind, Communicator, DeviceCommunicator, ReduceOp};
use weft_core::ir::DType;

impl NcclCommunicator {
    /// A device copy of `host` (or `len` zeros) from the staging cache.
    fn stage(&self, host: Option<&[f32]>, len: usize) -> Result<CudaBuffer> {
        let s = &self.up_stream;
        let mut data = match self.staging.take(DType::F32, len) {
            Some(d) => d,
            None => {
                self.staging.fresh(DType::F32, len);
                let fresh = s
                    .alloc_zeros::<f32>(len)
                    .map_err(|e| driver("NCCL staging", e))?;
                Data::F32(fresh)
            }
        };
        if let (Some(h), Data::F32(d)) = (host, &mut data) {
            s.memcpy_htod(h, d)
                .map_err(|e| driver("NCCL staging upload", e))?;
        }
        Ok(CudaBuffer::new(data, self.staging.clone()))
    }

    /// Copy a staged buffer back into `host`.
    fn unstage(&self, buf: &CudaBuffer, host: &mut [f32]) -> Result<()> {
        let s = &self.up_stream;
        if let Data::F32(d) = buf.data() {
            s.memcpy_dtoh(d, host)
                .map_err(|e| driver("NCCL staging download", e))?;
        }
        s.synchronize()
            .map_err(|e| driver("NCCL staging download", e))
    }

    /// Broadcast or reduce to `root`, in place on `buf` (the two rooted collectives).
    fn rooted(&self, buf: &mut [f32], root: usize, op: Option<ReduceOp>) -> Result<()> {
        let kind = match op {
            Some(_) => CollectiveKind::Reduce,
            None => CollectiveKind::Broadcast,
        };
        super::check("NCCL", &self.ranks, kind, (buf.len(), None), Some(root))?;
        let desc = self.next(kind, buf.len());
        let mut d = self.stage(Some(buf), buf.len())?;
        let s = &self.up_stream;
        {
            let (p, _g) = d.data_mut().ptr_mut(s);
            let (f32s, r) = (sys::ncclDataType_t::ncclFloat32, root as i32);
            // SAFETY: in place on a staged buffer of `buf.len()` f32, alive until the wait.
            let done = unsafe {
                match op {
                    Some(op) => nccl::reduce(
                        p as _,
                        p as _,
                        buf.len(),
                        f32s,
                        op_of(op),
                        r,
                        self.up.get()?,
                        s.cu_stream() as _,
                    ),
                    None => nccl::broadcast(
                        p as _,
                        p as _,
                        buf.len(),
                        f32s,
                        r,
                        self.up.get()?,
                        s.cu_stream() as _,
                    ),
                }
            };
            done.map_err(|e| nccl_error(kind.name(), e))?;
        }
        self.wait(s, desc)?;
        // Reduce changes only the root's buffer.
        if op.is_none() || root == DeviceCommunicator::rank(self) {
            self.unstage(&d, buf)?;
        }
        Ok(())
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        DeviceCommunicator::rank(self)
    }

    fn size(&self) -> usize {
        self.ranks.len()
    }

    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let mut d = self.stage(Some(buf), buf.len())?;
        DeviceCommunicator::all_reduce(self, &mut [&mut d], op)?;
        self.unstage(&d, buf)
    }

    fn all_gather(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        let i = self.stage(Some(input), input.len())?;
        let mut o = self.stage(None, output.len())?;
        DeviceCommunicator::all_gather(self, &i, &mut o)?;
        self.unstage(&o, output)
    }

    fn reduce_scatter(&self, input: &[f32], output: &mut [f32], op: ReduceOp) -> Result<()> {
        let i = self.stage(Some(input), input.len())?;
        let mut o = self.stage(None, output.len())?;
        DeviceCommunicator::reduce_scatter(self, &i, &mut o, op)?;
        self.unstage(&o, output)
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.rooted(buf, root, None)
    }

    fn reduce(&self, buf: &mut [f32], root: usize, op: ReduceOp) -> Result<()> {
        self.rooted(buf, root, Some(op))
    }

    fn all_to_all(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        let i = self.stage(Some(input), input.len())?;
        let mut o = self.stage(None, output.len())?;
        DeviceCommunicator::all_to_all(self, &i, &mut o)?;
        self.unstage(&o, output)
    }

    fn send(&self, buf: &[f32], to: usize, tag: u64) -> Result<()> {
        let d = self.stage(Some(buf), buf.len())?;
        DeviceCommunicator::send(self, &d, to, tag)
    }

    fn recv(&self, buf: &mut [f32], from: usize, tag: u64) -> Result<()> {
        let mut d = self.stage(None, buf.len())?;
        DeviceCommunicator::recv(self, &mut d, from, tag)?;
        self.unstage(&d, buf)
    }

    fn barrier(&self) -> Result<()> {
        let mut one = [0.0f32];
        Communicator::all_reduce(self, &mut one, ReduceOp::Sum)
    }

    fn abort(&self, reason: &str) {
        DeviceCommunicator::abort(self, reason);
    }
}
