//! Collectives: how ranks (CPU threads, processes, GPUs) exchange tensors.
//!
//! - `communicator`: the `Communicator` trait (all_reduce, all_gather, reduce_scatter,
//!   broadcast, reduce, all_to_all, send, recv, barrier over f32 host slices), `ReduceOp`, and
//!   the rules every engine shares: the fixed rank-order reduction that makes results identical
//!   bit for bit, and the buffer-size checks.
//! - `local`: the in-process engine, ranks as threads of one process (`LocalGroup`); groups and
//!   subgroups run independently; a rank that does not arrive, or calls the wrong collective,
//!   fails every waiting rank with a message naming the collective, its number, the group and
//!   the culprits, instead of hanging.
//! - `bucket`: gradient fusion, ready-ordered tensors packed into byte-balanced buckets
//!   (`communication.bucket_size_mb`, `communication.max_splits`), and flatten / unflatten.
//! - `fp16`: fp16 compression of all-reduce payloads (`communication.fp16`, `fp16_scale`).
//! - `tcp`: the engine between processes: the rendezvous store and `TcpCommunicator`.
//! - `device`: `DeviceCommunicator`, collectives over a backend's own buffers (GPU engines),
//!   the `GroupSpec` an engine makes them from, and `HostBuffers`, the host engine behind it.
//!
//! Failures are `Error::Collective` (code `WEFT_COLLECTIVE`).

mod bucket;
mod communicator;
mod device;
mod fp16;
mod group;
mod local;
pub mod tcp;

pub use bucket::{Bucket, flatten_into, plan_buckets, unflatten_from};
pub use communicator::{
    CollectiveKind, Communicator, ReduceOp, check_buffers, host_f32_mut, reduce_in_rank_order,
    u64s_to_words, words_to_u64s,
};
pub use device::{
    DeviceCommunicator, DeviceCommunicators, DeviceGroupFactory, GroupSpec, HostBuffers,
};
pub use fp16::{
    all_reduce_fp16, decode_f16, encode_f16, from_fp16_payload, reduce_scatter_fp16, round_to_f16,
    to_fp16_payload,
};
pub use local::{LocalCommunicator, LocalGroup};

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod local_tests;
