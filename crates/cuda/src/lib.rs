//! weft-cuda: the CUDA backend. cudarc with dynamic loading, so the crate builds and its
//! non-GPU tests run on machines without CUDA; every library is probed before first use and a
//! missing one is an `Error::Device` naming it (never a panic).
//!
//! Table of contents:
//! - `loader`   finding libcuda / libnvrtc / libcublas / libnccl; panic guard
//! - `kernels`  the CUDA C sources (templated over f32 / bf16 / f16) and their NVRTC compile

pub mod kernels;
pub mod loader;
