//! Data-parallel gradient reduction overlapped with backward. During a stage's last
//! micro-batch, every parameter's gradient is final once it is accumulated; when all gradients
//! of a fused bucket are final, the bucket goes to its channel's communication thread (one per
//! `communication.num_communicators` channel, so every replica issues each channel's buckets in
//! the same order) while backward computes the earlier layers. Under ZeRO v1 a bucket is
//! reduce-scattered instead: replica r keeps the r-th of R equal chunks of every bucket.
//! `Buckets` is the packing and writing back without the threads; the cooperative executor
//! fills them after compute and reduces them itself.

use crate::collectives::{
    Bucket, Communicator, ReduceOp, all_reduce_fp16, plan_buckets, reduce_scatter_fp16,
};
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::{Executor, GradReduce};
use crate::ir::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::thread::{Scope, ScopedJoinHandle};

type Reduced = Result<Vec<(usize, Vec<f32>)>>;

/// Where each parameter's gradient goes: (bucket, offset in it, length).
pub(super) type Slots = HashMap<NodeId, (usize, usize, usize)>;

/// The buckets over `order` (parameters in the order their gradients become final) and each
/// parameter's place in them: shared by the reducer and ZeRO's shard plan, which must agree.
/// Fixed for a compiled stage, so made once (`make_device`), not every step.
#[derive(Debug)]
pub(super) struct BucketLayout {
    pub buckets: Vec<Bucket>,
    pub slot_of: Slots,
}

impl BucketLayout {
    pub fn new(order: &[(NodeId, usize)], reduce: &GradReduce) -> BucketLayout {
        let sizes: Vec<(usize, usize)> = order
            .iter()
            .enumerate()
            .map(|(i, (_, n))| (i, *n))
            .collect();
        let buckets = plan_buckets(&sizes, reduce.bucket_bytes, reduce.max_splits);
        let mut slot_of = HashMap::new();
        for (b, bucket) in buckets.iter().enumerate() {
            let mut offset = 0;
            for &t in &bucket.tensors {
                let (p, n) = order[t];
                slot_of.insert(p, (b, offset, n));
                offset += n;
            }
        }
        BucketLayout { buckets, slot_of }
    }
}

/// ZeRO v1: this replica's index and the replica count (chunk r of R of each bucket).
pub(super) type ShardOf = Option<(usize, usize)>;

/// One stage's gradients packed into fused buckets as they become final, and the reduced
/// buckets written back: the part of the reducer that does not communicate, shared by the
/// threaded reducer below and the cooperative executor (which reduces at the driver).
pub(super) struct Buckets {
    layout: Arc<BucketLayout>,
    shard: ShardOf,
    /// Each bucket's packed gradients; taken when the bucket is full.
    pub flats: Vec<Vec<f32>>,
    remaining: Vec<usize>,
}

impl Buckets {
    pub fn new(layout: &Arc<BucketLayout>, shard: ShardOf, spare: &mut Vec<Vec<f32>>) -> Buckets {
        let buckets = &layout.buckets;
        Buckets {
            layout: layout.clone(),
            shard,
            // Reuse last step's bucket buffers: fresh megabytes would page-fault every step.
            flats: buckets
                .iter()
                .map(|b| {
                    let mut v = spare.pop().unwrap_or_default();
                    v.resize(b.elements, 0.0);
                    v
                })
                .collect(),
            remaining: buckets.iter().map(|b| b.tensors.len()).collect(),
        }
    }

    /// A parameter's gradient is final: copy it into its bucket. Returns the bucket when this
    /// completed it.
    pub fn ready(&mut self, param: NodeId, grad: &[f32]) -> Option<usize> {
        let &(b, offset, n) = self.layout.slot_of.get(&param)?;
        self.flats[b][offset..offset + n].copy_from_slice(grad);
        self.remaining[b] -= 1;
        (self.remaining[b] == 0).then_some(b)
    }

    /// Fails unless every bucket got all of its gradients.
    pub fn check_complete(&self) -> Result<()> {
        match self.remaining.iter().position(|&r| r > 0) {
            Some(b) => Err(Error::internal(format!(
                "gradient bucket {b} never became final"
            ))),
            None => Ok(()),
        }
    }

    /// Write the reduced buckets (under ZeRO v1, this replica's chunk of each) back as the
    /// scaled gradients, and return the bucket buffers to `spare`.
    pub fn write_back<B: Backend>(
        self,
        reduced: Vec<Option<Vec<f32>>>,
        exec: &mut Executor<B>,
        scale: f32,
        spare: &mut Vec<Vec<f32>>,
    ) -> Result<()> {
        for (&p, &(b, offset, n)) in &self.layout.slot_of {
            let flat = reduced[b]
                .as_ref()
                .ok_or_else(|| Error::internal("a bucket was not reduced"))?;
            let Some((me, _)) = self.shard else {
                exec.write_grad_scaled(p, 0..n, &flat[offset..offset + n], scale)?;
                continue;
            };
            // `flat` is this replica's chunk of the bucket: keep the part inside p.
            let start = me * flat.len();
            let (lo, hi) = (offset.max(start), (offset + n).min(start + flat.len()));
            if lo < hi {
                exec.write_grad_scaled(
                    p,
                    lo - offset..hi - offset,
                    &flat[lo - start..hi - start],
                    scale,
                )?;
            } else {
                exec.release_grad(p);
            }
        }
        spare.extend(reduced.into_iter().flatten());
        Ok(())
    }
}

pub(super) struct Overlap<'scope> {
    buckets: Buckets,
    senders: Vec<mpsc::Sender<(usize, Vec<f32>)>>,
    workers: Vec<ScopedJoinHandle<'scope, Reduced>>,
}

impl<'scope> Overlap<'scope> {
    /// Fill `layout`'s buckets as gradients become final, with one communication thread per
    /// channel.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        channels: &[&'env dyn Communicator],
        layout: &Arc<BucketLayout>,
        reduce: &GradReduce,
        shard: ShardOf,
        spare: &mut Vec<Vec<f32>>,
    ) -> Overlap<'scope> {
        let buckets = Buckets::new(layout, shard, spare);
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for &comm in channels {
            let (tx, rx) = mpsc::channel::<(usize, Vec<f32>)>();
            let fp16 = reduce.fp16_scale;
            senders.push(tx);
            workers.push(scope.spawn(move || {
                let mut done = Vec::new();
                let mut mine = Vec::new();
                for (b, mut flat) in rx {
                    match (shard, fp16) {
                        (Some((_, replicas)), _) => {
                            // Padded to R equal chunks; this replica's chunk comes back in
                            // the bucket's own buffer (truncated, so its memory is reused).
                            let chunk = flat.len().div_ceil(replicas);
                            flat.resize(chunk * replicas, 0.0);
                            mine.resize(chunk, 0.0);
                            match fp16 {
                                Some(scale) => reduce_scatter_fp16(
                                    comm,
                                    &mut flat,
                                    &mut mine,
                                    ReduceOp::Sum,
                                    scale,
                                )?,
                                None => comm.reduce_scatter(&flat, &mut mine, ReduceOp::Sum)?,
                            }
                            flat.truncate(chunk);
                            flat.copy_from_slice(&mine);
                        }
                        (None, Some(scale)) => {
                            all_reduce_fp16(comm, &mut flat, ReduceOp::Sum, scale)?
                        }
                        (None, None) => comm.all_reduce(&mut flat, ReduceOp::Sum)?,
                    }
                    done.push((b, flat));
                }
                Ok(done)
            }));
        }
        Overlap {
            buckets,
            senders,
            workers,
        }
    }

    /// A parameter's gradient is final: copy it into its bucket; launch the bucket when full.
    pub fn ready(&mut self, param: NodeId, grad: &[f32]) -> Result<()> {
        let Some(b) = self.buckets.ready(param, grad) else {
            return Ok(());
        };
        let flat = std::mem::take(&mut self.buckets.flats[b]);
        let tx = &self.senders[b % self.senders.len()];
        tx.send((b, flat))
            .map_err(|_| Error::internal("a gradient communication thread stopped"))
    }

    /// Wait for every bucket, write the reduced, scaled gradients back, and return the bucket
    /// buffers to `spare`.
    pub fn finish<B: Backend>(
        self,
        exec: &mut Executor<B>,
        scale: f32,
        spare: &mut Vec<Vec<f32>>,
    ) -> Result<()> {
        self.buckets.check_complete()?;
        drop(self.senders);
        let mut reduced: Vec<Option<Vec<f32>>> =
            (0..self.buckets.flats.len()).map(|_| None).collect();
        for w in self.workers {
            let done = w
                .join()
                .unwrap_or_else(|_| Err(Error::internal("a communication thread panicked")))?;
            for (b, flat) in done {
                reduced[b] = Some(flat);
            }
        }
        self.buckets.write_back(reduced, exec, scale, spare)
    }
}
