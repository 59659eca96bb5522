//! weft-cuda: the CUDA backend. cudarc with dynamic loading, so the crate builds and its
//! non-GPU tests run on machines without CUDA; every library is probed before first use and a
//! missing one is an `Error::Device` naming it (never a panic).
//!
//! Table of contents:
//! - `loader`   finding libcuda / libnvrtc / libcublas / libnccl; the panic guard
//! - `kernels`  the CUDA C sources (templated over f32 / bf16 / f16) and their NVRTC compile
//! - `device`   one GPU: context, a stream per role, cuBLAS, kernels compiled on first use
//! - `buffer`   device buffers and the caching allocator
//! - `ops`      one launch function per op family
//! - `backend`  `CudaBackend`, weft_core's `Backend` trait on one GPU
//! - `collectives` device groups: `GpuGroup` (virtual devices on one GPU), NCCL (distinct GPUs)
//! - `session`  `compile`: weft_core's trainer on `cuda:N` virtual devices

mod backend;
mod buffer;
pub mod collectives;
mod device;
pub mod kernels;
pub mod loader;
mod ops;
mod session;

pub use backend::CudaBackend;
pub use buffer::{CacheStats, CudaBuffer};
pub use device::probe;
pub use session::compile;
