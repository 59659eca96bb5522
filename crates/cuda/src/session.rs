//! Training on GPUs: weft_core's session over `CudaBackend`, one backend per virtual device.
//! `devices: cuda:N` places N virtual devices on the visible GPUs round-robin (device r on GPU
//! r mod visible), so several share one GPU, each with its own streams; the plan's
//! collectives between them run in-process on host copies of the buffers.

use crate::CudaBackend;
use crate::device::probe_for;
use crate::loader::Lib;
use weft_core::ir::Graph;
use weft_core::session::{DeviceSpec, Trainer, TrainerOptions};
use weft_core::{Error, Result};

/// Compile `model` for `options.devices` = `cuda:N`. No GPU or a missing CUDA library is an
/// `Error::Device` naming it.
pub fn compile(model: Graph, options: TrainerOptions) -> Result<Trainer<CudaBackend>> {
    let DeviceSpec::Cuda(n) = options.devices else {
        return Err(Error::Device {
            message: "weft_cuda::compile builds cuda:N devices; cpu devices compile with \
                      Trainer::compile"
                .into(),
        });
    };
    // In-process virtual devices exchange tensors through host memory: no NCCL needed.
    let visible = probe_for(&format!("devices cuda:{n}"), &Lib::BACKEND, 1)?;
    let gpus = n.min(visible);
    Trainer::compile_with(model, options, &|rank, _threads| {
        CudaBackend::new(rank % gpus)
    })
}
