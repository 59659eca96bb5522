//! Training on GPUs: weft_core's session over `CudaBackend`, one backend per virtual device.
//! `devices: cuda:N` places N virtual devices on the visible GPUs round-robin (device r on GPU
//! r mod visible), so several share one GPU, each with its own streams. In a multi-process job
//! (`weft launch`, torchrun, Slurm, Open MPI) process p's devices start at GPU
//! `LOCAL_RANK x N`. Pipeline sends and the gradient all-reduce move in GPU memory through the
//! engine's device groups (`collectives::make_groups`); the rest of the plan's exchanges (the
//! step's scalars, the initial broadcast) go through the host communicators.

use crate::CudaBackend;
use crate::collectives::make_groups;
use crate::device::probe_for;
use crate::loader::Lib;
use weft_core::collectives::GroupSpec;
use weft_core::ir::Graph;
use weft_core::session::{DeviceSpec, Engine, Trainer, TrainerOptions};
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
    // NCCL is needed only by groups over distinct GPUs; `make_groups` requires it then.
    let visible = probe_for(&format!("devices cuda:{n}"), &Lib::BACKEND, 1)?;
    let local_rank = options.processes.as_ref().map(|p| p.local_rank);
    let gpu_of = gpu_placement(n, visible, local_rank);
    let backend = |rank: usize, _threads: usize| CudaBackend::new(gpu_of(rank));
    let groups = |spec: &GroupSpec<'_>| make_groups(spec, &gpu_of);
    let engine = Engine {
        backend: &backend,
        groups: Some(&groups),
    };
    Trainer::compile_on(model, options, &engine)
}

/// The GPU of each global device rank: round-robin over the visible GPUs from this process's
/// first one (`local_rank x n` in a multi-process job, whose process p hosts ranks
/// `p*n .. (p+1)*n`).
fn gpu_placement(
    n: usize,
    visible: usize,
    local_rank: Option<usize>,
) -> impl Fn(usize) -> usize + Sync {
    let visible = visible.max(1);
    move |rank| match local_rank {
        None => rank % n.min(visible).max(1),
        Some(l) => (l * n + rank % n.max(1)) % visible,
    }
}

#[cfg(test)]
mod tests {
    use super::gpu_placement;

    #[test]
    fn devices_go_round_robin_from_the_process_first_gpu() {
        let one = gpu_placement(4, 2, None);
        assert_eq!((0..4).map(&one).collect::<Vec<_>>(), [0, 1, 0, 1]);
        let few = gpu_placement(2, 8, None);
        assert_eq!((0..2).map(&few).collect::<Vec<_>>(), [0, 1]);
        // Local rank 1 of a job with two devices per process on a 4-GPU node: GPUs 2 and 3.
        let second = gpu_placement(2, 4, Some(1));
        assert_eq!([6, 7].map(&second), [2, 3]);
        let shared = gpu_placement(1, 1, Some(3));
        assert_eq!(shared(3), 0);
    }
}
