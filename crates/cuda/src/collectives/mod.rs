//! The CUDA engine's device groups: collectives in GPU memory, never staged through the host.
//!
//! Table of contents:
//! - `plan`       the index arithmetic (chunks, bucket segments, kernel passes), CPU-tested
//! - `gpu_group`  `GpuGroup`: virtual devices sharing one GPU (device-to-device copies and a
//!   rank-ordered reduction kernel; NCCL refuses two ranks on one GPU)
//! - `nccl`       `NcclCommunicator`: distinct GPUs, in this process or across processes
//! - `nccl_p2p`   its tagged sends and receives (NCCL itself matches messages by order)
//! - `nccl_host`  the same group as a host `Communicator` (slices staged through the GPU)
//! - this file    `make_groups`, which picks the engine for each group of a layout

mod gpu_group;
mod nccl;
mod nccl_host;
mod nccl_p2p;
mod plan;

pub use gpu_group::GpuGroup;
pub use nccl::NcclCommunicator;

use crate::buffer::CudaBuffer;
use weft_core::collectives::{
    CollectiveKind, DeviceCommunicator, DeviceCommunicators, GroupSpec, check_buffers,
};
use weft_core::{Error, Result};

/// The device group for `spec` (`gpu_of`: a global device rank's GPU):
/// - members all on one GPU (one process): a `GpuGroup`, bit-identical to the CPU engines;
/// - members on distinct GPUs, in this process or across processes: NCCL;
/// - a group mixing shared and distinct GPUs in one process: the host communicators (None).
pub fn make_groups(
    spec: &GroupSpec<'_>,
    gpu_of: &dyn Fn(usize) -> usize,
) -> Result<DeviceCommunicators<CudaBuffer>> {
    let gpus: Vec<usize> = spec
        .members
        .iter()
        .map(|&m| gpu_of(spec.ranks[m]))
        .collect();
    let boxed = |v: Vec<Box<dyn DeviceCommunicator<CudaBuffer>>>| Ok(Some(v));
    let one_gpu = gpus.windows(2).all(|w| w[0] == w[1]);
    let distinct = (1..gpus.len()).all(|i| !gpus[..i].contains(&gpus[i]));
    match (&spec.store, spec.purpose) {
        (None, _) if one_gpu && spec.members.len() == spec.ranks.len() => {
            let groups = GpuGroup::create(gpus[0], spec.ranks, spec.timeout)?;
            boxed(groups.into_iter().map(|g| Box::new(g) as _).collect())
        }
        (_, _) if distinct => {
            let groups = NcclCommunicator::create(spec, &gpus)?;
            boxed(groups.into_iter().map(|g| Box::new(g) as _).collect())
        }
        (Some(_), purpose) => Err(Error::unsupported(
            "several virtual devices per GPU across processes",
            format!(
                "this process's members of {purpose} group {} share GPUs {gpus:?}; NCCL needs \
                 one GPU per rank (start one process per GPU with cuda:1)",
                describe(spec.ranks)
            ),
        )),
        _ => Ok(None),
    }
}

/// `check_buffers` for a collective of `engine`'s group over `ranks` (`input` the length every
/// rank agrees on, `output` a separate output's), refused in the host engines' words.
pub(crate) fn check(
    engine: &str,
    ranks: &[usize],
    kind: CollectiveKind,
    (input, output): (usize, Option<usize>),
    root: Option<usize>,
) -> Result<()> {
    check_buffers(kind, ranks.len(), input, output, root).map_err(|why| {
        collective(format!(
            "{kind} on {engine} group {}: {why}",
            describe(ranks)
        ))
    })
}

/// `Error::Collective` with `message`.
pub(crate) fn collective(message: String) -> Error {
    Error::Collective { message }
}

/// "[0,2,4]", as the host engines print groups.
pub(crate) fn describe(ranks: &[usize]) -> String {
    let inner: Vec<String> = ranks.iter().map(usize::to_string).collect();
    format!("[{}]", inner.join(","))
}
