//! Device buffers and the caching allocator. A dropped buffer's memory goes back to a free list
//! keyed by (dtype, length) instead of to the driver, so a training loop that asks for the same
//! sizes every step stops calling cudaMalloc after its first step. The executor's `Pool`
//! (weft_core::exec::memory) does the per-category live/peak accounting for every backend; this
//! cache adds what only a device allocator knows: bytes reserved from the driver and their peak.

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, SyncOnDrop};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weft_core::ir::DType;

/// Typed device storage; the 16-bit floats hold their bit patterns, as `HostData` does.
pub enum Data {
    F32(CudaSlice<f32>),
    I32(CudaSlice<i32>),
    BF16(CudaSlice<u16>),
    F16(CudaSlice<u16>),
}

impl Data {
    /// Zero-fills the buffer on `stream`.
    pub fn memset_zeros(&mut self, stream: &Arc<CudaStream>) -> weft_core::Result<()> {
        match self {
            Data::F32(x) => stream.memset_zeros(x),
            Data::I32(x) => stream.memset_zeros(x),
            Data::BF16(x) | Data::F16(x) => stream.memset_zeros(x),
        }
        .map_err(|e| crate::device::driver("memset", e))
    }

    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::I32(_) => DType::I32,
            Data::BF16(_) => DType::BF16,
            Data::F16(_) => DType::F16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Data::F32(s) => s.len(),
            Data::I32(s) => s.len(),
            Data::BF16(s) | Data::F16(s) => s.len(),
        }
    }

    /// The raw device address, for kernels that take any element type (casts, copies); the
    /// guard records the use on `stream` when dropped, so keep it alive past the launch.
    pub fn ptr<'a>(&'a self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        match self {
            Data::F32(s) => s.device_ptr(stream),
            Data::I32(s) => s.device_ptr(stream),
            Data::BF16(s) | Data::F16(s) => s.device_ptr(stream),
        }
    }

    /// Mutable form of `ptr`.
    pub fn ptr_mut<'a>(&'a mut self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        match self {
            Data::F32(s) => s.device_ptr_mut(stream),
            Data::I32(s) => s.device_ptr_mut(stream),
            Data::BF16(s) | Data::F16(s) => s.device_ptr_mut(stream),
        }
    }
}

/// Bytes held by the allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes allocated from the driver and not released (in use or cached).
    pub reserved: usize,
    pub peak_reserved: usize,
    /// Bytes in buffers handed out.
    pub in_use: usize,
    pub peak_in_use: usize,
}

/// Free blocks by (dtype, length).
type FreeLists = HashMap<(DType, usize), Vec<Data>>;

#[derive(Default)]
pub struct Cache {
    free: Mutex<(FreeLists, CacheStats)>,
}

impl Cache {
    /// A cached block of exactly (dtype, len), if one is free.
    pub fn take(&self, dtype: DType, len: usize) -> Option<Data> {
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let data = g.0.get_mut(&(dtype, len)).and_then(Vec::pop)?;
        let bytes = len * dtype.size_bytes();
        g.1.in_use += bytes;
        g.1.peak_in_use = g.1.peak_in_use.max(g.1.in_use);
        Some(data)
    }

    /// Accounts for a block freshly allocated from the driver.
    pub fn fresh(&self, dtype: DType, len: usize) {
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = len * dtype.size_bytes();
        let s = &mut g.1;
        s.reserved += bytes;
        s.peak_reserved = s.peak_reserved.max(s.reserved);
        s.in_use += bytes;
        s.peak_in_use = s.peak_in_use.max(s.in_use);
    }

    fn give(&self, data: Data) {
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let (dtype, len) = (data.dtype(), data.len());
        g.1.in_use -= len * dtype.size_bytes();
        g.0.entry((dtype, len)).or_default().push(data);
    }

    /// Returns every cached block to the driver.
    pub fn release(&self) {
        let mut g = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let freed: usize =
            g.0.drain()
                .flat_map(|(_, v)| v)
                .map(|d| d.len() * d.dtype().size_bytes())
                .sum();
        g.1.reserved -= freed;
    }

    pub fn stats(&self) -> CacheStats {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// A buffer on the GPU; its memory returns to the cache when dropped.
pub struct CudaBuffer {
    data: Option<Data>,
    cache: Arc<Cache>,
}

impl CudaBuffer {
    pub(crate) fn new(data: Data, cache: Arc<Cache>) -> CudaBuffer {
        CudaBuffer {
            data: Some(data),
            cache,
        }
    }

    pub fn data(&self) -> &Data {
        // Only `drop` takes the data out.
        self.data.as_ref().expect("buffer data present until drop")
    }

    pub fn data_mut(&mut self) -> &mut Data {
        self.data.as_mut().expect("buffer data present until drop")
    }

    pub fn dtype(&self) -> DType {
        self.data().dtype()
    }

    pub fn len(&self) -> usize {
        self.data().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        if let Some(d) = self.data.take() {
            self.cache.give(d);
        }
    }
}
