//! The buffer pool and its accounting. Freed buffers are kept by (dtype, length) and handed out
//! again, so after the first step a training loop allocates nothing; live bytes are tracked per
//! category so a run reports its measured peak next to the planner's prediction.

use super::backend::Backend;
use crate::error::Result;
use crate::ir::DType;
use std::collections::HashMap;

/// What a buffer holds, for the memory report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Parameters,
    Gradients,
    OptimizerState,
    Activations,
    /// Host memory under `offload.level='v0'` (master parameters and optimizer state); not
    /// part of the device's total.
    Host,
}

/// Bytes per category: current and peak.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    pub live: [usize; 5],
    pub peak: [usize; 5],
    /// Peak of the sum over the device's categories (not the sum of per-category peaks).
    pub peak_total: usize,
    live_total: usize,
}

impl MemoryStats {
    fn add(&mut self, c: Category, bytes: usize) {
        let i = c as usize;
        self.live[i] += bytes;
        self.peak[i] = self.peak[i].max(self.live[i]);
        if c != Category::Host {
            self.live_total += bytes;
            self.peak_total = self.peak_total.max(self.live_total);
        }
    }

    fn sub(&mut self, c: Category, bytes: usize) {
        self.live[c as usize] -= bytes;
        if c != Category::Host {
            self.live_total -= bytes;
        }
    }

    pub fn peak_of(&self, c: Category) -> usize {
        self.peak[c as usize]
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "params": self.peak[0],
            "grads": self.peak[1],
            "optimizer_state": self.peak[2],
            "activations": self.peak[3],
            "host": self.peak[4],
            "peak_total": self.peak_total,
            // Parameter bytes on the device now: between steps, those it keeps.
            "resident_params": self.live[0],
        })
    }
}

pub struct Pool<B: Backend> {
    free: HashMap<(DType, usize), Vec<B::Buffer>>,
    pub stats: MemoryStats,
}

impl<B: Backend> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            free: HashMap::new(),
            stats: MemoryStats::default(),
        }
    }
}

impl<B: Backend> Pool<B> {
    /// A buffer of `len` elements (contents unspecified unless freshly allocated).
    pub fn take(
        &mut self,
        backend: &B,
        c: Category,
        dtype: DType,
        len: usize,
    ) -> Result<B::Buffer> {
        self.stats.add(c, len * dtype.size_bytes());
        match self.free.get_mut(&(dtype, len)).and_then(Vec::pop) {
            Some(b) => Ok(b),
            None => backend.alloc(dtype, len),
        }
    }

    /// Account for a buffer that was created outside the pool (uploads, parameters).
    pub fn adopt(&mut self, c: Category, dtype: DType, len: usize) {
        self.stats.add(c, len * dtype.size_bytes());
    }

    pub fn give(&mut self, c: Category, dtype: DType, len: usize, buf: B::Buffer) {
        self.stats.sub(c, len * dtype.size_bytes());
        self.free.entry((dtype, len)).or_default().push(buf);
    }

    /// Forget a buffer without keeping it (e.g. replaced parameter storage).
    pub fn drop_buffer(&mut self, c: Category, dtype: DType, len: usize) {
        self.stats.sub(c, len * dtype.size_bytes());
    }

    /// Restart peak tracking from the current live bytes (after warm-up, or per report).
    pub fn reset_peaks(&mut self) {
        self.stats.peak = self.stats.live;
        self.stats.peak_total = self.stats.live_total;
    }
}

/// `v` resized to `len`, growing its allocation to exactly what the largest use needs: scratch
/// kept between steps (fresh megabytes would page-fault on every step) whose measured size is
/// its capacity.
pub fn grow_exact(v: &mut Vec<f32>, len: usize) {
    if len > v.capacity() {
        v.reserve_exact(len - v.len());
    }
    v.resize(len, 0.0);
}
