//! `CudaBackend`: weft_core's `Backend` on one GPU. Kernels and cuBLAS run on the compute
//! stream; uploads and downloads on the copy stream, ordered against compute by stream joins.

use crate::buffer::{Cache, CacheStats, CudaBuffer, Data};
use crate::device::{Device, driver};
use crate::loader;
use crate::ops::{self, Launch};
use cudarc::driver::CudaSlice;
use std::sync::Arc;
use weft_core::exec::{Backend, HostData, HostView, KernelCtx, TensorRef, UpdateRule};
use weft_core::ir::{DType, Op};
use weft_core::{Error, Result};

pub struct CudaBackend {
    pub(crate) dev: Device,
    pub(crate) cache: Arc<Cache>,
    ordinal: usize,
}

impl CudaBackend {
    /// The backend on GPU `ordinal`. Without a usable GPU this is `Error::Device` naming what
    /// is missing (a library, or the device); it never panics.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        Ok(CudaBackend {
            dev: Device::open(ordinal)?,
            cache: Arc::new(Cache::default()),
            ordinal,
        })
    }

    /// The allocator's reserved and in-use bytes.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Returns cached device memory to the driver.
    pub fn release_cached(&self) {
        self.cache.release();
    }

    /// The stream collectives run on (NCCL, device-to-device copies between virtual devices),
    /// separate from compute so communication overlaps the backward pass.
    pub fn comm_stream(&self) -> &std::sync::Arc<cudarc::driver::CudaStream> {
        &self.dev.streams.comm
    }

    /// Waits for everything queued on this GPU.
    pub fn synchronize(&self) -> Result<()> {
        self.dev
            .ctx
            .synchronize()
            .map_err(|e| driver("synchronize", e))
    }

    pub(crate) fn wrap(&self, data: Data) -> CudaBuffer {
        CudaBuffer::new(data, self.cache.clone())
    }

    /// An f32 scratch buffer from the cache (contents unspecified).
    pub(crate) fn scratch(&self, len: usize) -> Result<CudaBuffer> {
        match self.cache.take(DType::F32, len) {
            Some(d) => Ok(self.wrap(d)),
            None => self.alloc(DType::F32, len),
        }
    }

    fn launcher(&self) -> Launch<'_> {
        Launch { b: self }
    }

    /// Makes the copy stream wait for compute (before reading or overwriting a buffer), or
    /// compute wait for copy (before using what was uploaded).
    fn order(&self, copy_after_compute: bool) -> Result<()> {
        let s = &self.dev.streams;
        let r = if copy_after_compute {
            s.copy.join(&s.compute)
        } else {
            s.compute.join(&s.copy)
        };
        r.map_err(|e| driver("stream join", e))
    }
}

fn f32_of<'a>(what: &str, b: &'a CudaBuffer) -> Result<&'a CudaSlice<f32>> {
    match b.data() {
        Data::F32(s) => Ok(s),
        _ => Err(Error::internal(format!("{what}: buffer is not f32"))),
    }
}

fn f32_mut<'a>(what: &str, b: &'a mut CudaBuffer) -> Result<&'a mut CudaSlice<f32>> {
    match b.data_mut() {
        Data::F32(s) => Ok(s),
        _ => Err(Error::internal(format!("{what}: buffer is not f32"))),
    }
}

fn mismatch(what: &str, a: usize, b: usize) -> Error {
    Error::internal(format!("{what}: buffers have {a} and {b} elements"))
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer;

    fn name(&self) -> String {
        format!(
            "cuda:{} ({}, {})",
            self.ordinal, self.dev.name, self.dev.arch
        )
    }

    fn alloc(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        let s = &self.dev.streams.compute;
        if let Some(mut d) = self.cache.take(dtype, len) {
            d.memset_zeros(s)?;
            return Ok(self.wrap(d));
        }
        let d = match dtype {
            DType::F32 => s.alloc_zeros::<f32>(len).map(Data::F32),
            DType::I32 => s.alloc_zeros::<i32>(len).map(Data::I32),
            DType::BF16 => s.alloc_zeros::<u16>(len).map(Data::BF16),
            DType::F16 => s.alloc_zeros::<u16>(len).map(Data::F16),
        };
        let d = d.map_err(|e| driver(&format!("alloc of {len} x {dtype}"), e))?;
        self.cache.fresh(dtype, len);
        Ok(self.wrap(d))
    }

    fn upload(&self, data: &HostData) -> Result<CudaBuffer> {
        let mut buf = self.alloc(data.dtype(), data.len())?;
        self.write(&mut buf, weft_core::exec::AsHostView::view(data))?;
        Ok(buf)
    }

    fn write(&self, buf: &mut CudaBuffer, data: HostView<'_>) -> Result<()> {
        if buf.dtype() != data.dtype() || buf.len() != data.len() {
            return Err(Error::internal(format!(
                "write of {} x {} into a {} x {} buffer",
                data.dtype(),
                data.len(),
                buf.dtype(),
                buf.len()
            )));
        }
        self.order(true)?;
        let copy = &self.dev.streams.copy;
        let r = match (buf.data_mut(), data) {
            (Data::F32(d), HostView::F32(h)) => copy.memcpy_htod(h, d),
            (Data::I32(d), HostView::I32(h)) => copy.memcpy_htod(h, d),
            (Data::BF16(d), HostView::BF16(h)) | (Data::F16(d), HostView::F16(h)) => {
                copy.memcpy_htod(h, d)
            }
            _ => return Err(Error::internal("write: dtype mismatch")),
        };
        r.map_err(|e| driver("upload", e))?;
        self.order(false)
    }

    fn download(&self, buf: &CudaBuffer) -> Result<HostData> {
        self.order(true)?;
        let copy = &self.dev.streams.copy;
        let r = match buf.data() {
            Data::F32(s) => copy.clone_dtoh(s).map(HostData::F32),
            Data::I32(s) => copy.clone_dtoh(s).map(HostData::I32),
            Data::BF16(s) => copy.clone_dtoh(s).map(HostData::BF16),
            Data::F16(s) => copy.clone_dtoh(s).map(HostData::F16),
        };
        let out = r.map_err(|e| driver("download", e))?;
        copy.synchronize().map_err(|e| driver("download", e))?;
        Ok(out)
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[TensorRef<'_, CudaBuffer>],
        out: &mut CudaBuffer,
        out_shape: &[usize],
        ctx: &KernelCtx,
    ) -> Result<()> {
        if weft_core::exec::tp::cpu_only(op) {
            return Err(Error::unsupported(
                format!("{} on CUDA", op.name()),
                "tensor-, vocabulary- and expert-parallel ops and the metrics (argmax, equal) have CPU \
                 kernels only in this build",
            ));
        }
        ops::check(op, inputs, out, out_shape)?;
        let l = self.launcher();
        loader::guard(op.name(), || match op {
            Op::Cast { .. } => l.cast(inputs[0].buf, out),
            Op::LossScale => l.fill(out, ctx.loss_scale),
            _ if op.moves_data() => ops::dispatch(&l, op, inputs, out, out_shape, ctx),
            _ if weft_core::exec::touches_half(inputs, out.dtype())
                && !(ops::native_half(op) && ops::uniform_float(inputs, out)) =>
            {
                l.execute_widened(op, inputs, out, out_shape, ctx)
            }
            _ => ops::dispatch(&l, op, inputs, out, out_shape, ctx),
        })
    }

    fn sum_squares(&self, buf: &CudaBuffer) -> Result<f64> {
        let x = f32_of("sum_squares", buf)?;
        self.launcher().sum_squares_all(&[x])
    }

    fn sum_squares_all(&self, bufs: &[&CudaBuffer]) -> Result<f64> {
        let xs = bufs
            .iter()
            .map(|b| f32_of("sum_squares", b))
            .collect::<Result<Vec<_>>>()?;
        loader::guard("sum_squares", || self.launcher().sum_squares_all(&xs))
    }

    fn scale_inplace(&self, buf: &mut CudaBuffer, factor: f32) -> Result<()> {
        let x = f32_mut("scale_inplace", buf)?;
        self.launcher().scale_inplace(x, factor)
    }

    fn add_inplace(&self, dst: &mut CudaBuffer, src: &CudaBuffer) -> Result<()> {
        let s = f32_of("add_inplace", src)?;
        let d = f32_mut("add_inplace", dst)?;
        if d.len() != s.len() {
            return Err(mismatch("add_inplace", d.len(), s.len()));
        }
        self.launcher().add_inplace(d, s)
    }

    fn update(
        &self,
        rule: &UpdateRule,
        step: u64,
        param: &mut CudaBuffer,
        grad: &CudaBuffer,
        state: &mut [CudaBuffer],
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let p = f32_mut("update: parameter", param)?;
        let g = f32_of("update: gradient", grad)?;
        let g = g.slice(rule.grad_range(p.len(), g.len(), &range, state.len())?);
        let mut bufs = Vec::with_capacity(state.len());
        for s in state.iter_mut() {
            let b = f32_mut("update: state", s)?;
            if b.len() != range.len() {
                return Err(mismatch("update state", range.len(), b.len()));
            }
            bufs.push(b);
        }
        let mut p = p.slice_mut(range);
        self.launcher().update(rule, step, &mut p, &g, bufs)
    }
}
