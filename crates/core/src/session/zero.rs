//! ZeRO v0: optimizer state sharded across a stage's data-parallel replicas. Gradients are
//! all-reduced as without ZeRO; each replica then updates only its shard of the parameters
//! (keeping Adam's moments for that shard alone) and an all-gather gives every replica the
//! whole updated parameters again.
//!
//! ZeRO v1 also shards gradients: each gradient bucket is reduce-scattered instead of
//! all-reduced, and a replica keeps only its chunk of the reduced gradient.
//!
//! ZeRO v2 also shards parameters: a replica keeps only the piece it updates, so nothing is
//! gathered after the update; instead each program gathers a parameter right before its first
//! use in a phase (`Action::Fetch`, see `exec/interpreter/shards.rs`) and frees it after.
//!
//! Ownership follows the reducer's buckets (identical on every replica): each bucket is cut
//! into `replicas` equal chunks and replica r owns chunk r of every bucket, whatever parameters
//! it crosses, so each replica holds 1/R of the state to within one element per bucket, and
//! v1's reduce-scatter hands each replica exactly the gradient it updates. Because the update
//! is elementwise, a shard's update equals the same elements of the whole update: ZeRO
//! training is bit-identical to plain data parallelism.

use super::overlap::BucketLayout;
use crate::collectives::Communicator;
use crate::error::{Error, Result};
use crate::exec::grow_exact;
use crate::ir::NodeId;
use std::collections::HashMap;
use std::ops::Range;

/// How a stage's parameters are sharded over its data-parallel replicas.
#[derive(Debug, Clone)]
pub(super) struct ShardPlan {
    /// Each parameter's (bucket, offset in the bucket, length), in bucket order.
    slots: Vec<(NodeId, (usize, usize, usize))>,
    /// Each bucket's chunk: the elements of it each replica owns (the last may own fewer).
    chunks: Vec<usize>,
    replicas: usize,
    /// `optimizer.num_apply_group`: contiguous runs of `slots` updated and gathered in turn.
    groups: Vec<Range<usize>>,
    /// The gather's buffers (own shard, all shards), kept between steps: fresh megabytes
    /// would page-fault on every step.
    scratch: (Vec<f32>, Vec<f32>),
}

impl ShardPlan {
    /// The plan for a stage's gradient buckets (the reducer's own `layout`), applied in
    /// `groups` runs of parameters balanced by size.
    pub fn new(layout: &BucketLayout, replicas: usize, groups: usize) -> ShardPlan {
        let BucketLayout { buckets, slot_of } = layout;
        let mut slots: Vec<(NodeId, (usize, usize, usize))> =
            slot_of.iter().map(|(&p, &s)| (p, s)).collect();
        slots.sort_by_key(|&(_, (b, offset, _))| (b, offset));
        let chunks = buckets
            .iter()
            .map(|b| b.elements.div_ceil(replicas.max(1)))
            .collect();
        let sizes: Vec<usize> = slots.iter().map(|&(_, (_, _, n))| n).collect();
        ShardPlan {
            slots,
            chunks,
            replicas,
            groups: balanced_runs(&sizes, groups),
            scratch: (Vec::new(), Vec::new()),
        }
    }

    /// Apply groups: each a run of parameters in bucket order.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Whether parameter `p` is updated in group `g`.
    pub fn in_group(&self, p: NodeId, g: usize) -> bool {
        self.slots[self.groups[g].clone()]
            .iter()
            .any(|&(q, _)| q == p)
    }

    /// Bytes of the gather's buffers for the largest group (the optimizer's temporaries,
    /// predicted).
    pub fn gather_bytes(&self) -> usize {
        (0..self.groups.len())
            .map(|g| self.group_len(g) * (1 + self.replicas) * 4)
            .max()
            .unwrap_or(0)
    }

    /// Bytes of ZeRO v2's parameter gather buffers: two pairs (one gathered ahead while the
    /// other is copied out), each the largest piece (padded) and all replicas' pieces.
    pub fn param_gather_bytes(&self) -> usize {
        let most = self
            .param_pieces()
            .values()
            .flat_map(|pieces| pieces.iter().map(Range::len))
            .max()
            .unwrap_or(0);
        2 * most * (1 + self.replicas) * 4
    }

    /// Elements each replica contributes to group `g`'s all-gather: the most any replica
    /// owns in it (the others pad).
    fn group_len(&self, g: usize) -> usize {
        (0..self.replicas)
            .map(|r| {
                self.pieces(r, g)
                    .map(|(_, range)| range.len())
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Replica `r`'s pieces of group `g`'s parameters, in slot order.
    fn pieces(&self, r: usize, g: usize) -> impl Iterator<Item = (NodeId, Range<usize>)> + '_ {
        self.slots[self.groups[g].clone()]
            .iter()
            .filter_map(move |&(p, slot)| self.piece(r, slot).map(|range| (p, range)))
    }

    /// Replica `r`'s range of the parameter in `slot`: replica r owns the r-th chunk of every
    /// bucket.
    fn piece(&self, r: usize, (b, offset, n): (usize, usize, usize)) -> Option<Range<usize>> {
        let start = r * self.chunks[b];
        let (lo, hi) = (offset.max(start), (offset + n).min(start + self.chunks[b]));
        (lo < hi).then(|| lo - offset..hi - offset)
    }

    /// Replica `replica`'s range of each parameter it owns part of (parameter coordinates).
    pub fn owned(&self, replica: usize) -> HashMap<NodeId, Range<usize>> {
        self.slots
            .iter()
            .filter_map(|&(p, slot)| self.piece(replica, slot).map(|range| (p, range)))
            .collect()
    }

    /// Every replica's range of each parameter (replica order; empty where it owns none):
    /// ZeRO v2 keeps parameters in these pieces.
    pub fn param_pieces(&self) -> HashMap<NodeId, Vec<Range<usize>>> {
        self.slots
            .iter()
            .map(|&(p, slot)| {
                let pieces = (0..self.replicas)
                    .map(|r| self.piece(r, slot).unwrap_or(0..0))
                    .collect();
                (p, pieces)
            })
            .collect()
    }

    /// Bytes the gather's buffers hold (measured: they keep the largest group's size).
    pub fn gather_buffer_bytes(&self) -> usize {
        (self.scratch.0.capacity() + self.scratch.1.capacity()) * 4
    }

    /// Elements of optimizer state a replica keeps per state buffer (for the memory plan).
    pub fn owned_elements(&self, replica: usize) -> usize {
        self.owned(replica).values().map(Range::len).sum()
    }

    /// The largest parameter: under v1 one whole gradient at a time lives until it is copied
    /// into its bucket (for the memory plan).
    pub fn largest(&self) -> usize {
        self.slots
            .iter()
            .map(|&(_, (_, _, n))| n)
            .max()
            .unwrap_or(0)
    }

    /// After each replica updated its shard: all-gather the shards so that every replica's
    /// `params` hold the whole updated parameters.
    pub fn gather(
        &mut self,
        replica: usize,
        apply_group: usize,
        params: &mut HashMap<NodeId, &mut [f32]>,
        group: &dyn Communicator,
    ) -> Result<()> {
        let len = self.group_len(apply_group);
        let (mut shard, mut all) = std::mem::take(&mut self.scratch);
        grow_exact(&mut all, len * self.replicas);
        let gathered = self
            .pack(replica, apply_group, params, &mut shard)
            .and_then(|()| group.all_gather(&shard, &mut all));
        let written = gathered.and_then(|()| self.unpack(apply_group, params, &all));
        self.scratch = (shard, all);
        written
    }

    /// Replica `replica`'s pieces of group `g`'s parameters, packed into `shard` (resized to
    /// the group's all-gather length; what it does not fill is padding).
    pub fn pack(
        &self,
        replica: usize,
        g: usize,
        params: &mut HashMap<NodeId, &mut [f32]>,
        shard: &mut Vec<f32>,
    ) -> Result<()> {
        grow_exact(shard, self.group_len(g));
        let mut at = 0;
        self.pieces(replica, g).try_for_each(|(p, range)| {
            let n = range.len();
            shard[at..at + n].copy_from_slice(&param(params, p)?[range]);
            at += n;
            Ok(())
        })
    }

    /// Every replica's pieces of group `g` from `all` (their packed shards in replica order,
    /// as the all-gather returns them) into the whole parameters.
    pub fn unpack(
        &self,
        g: usize,
        params: &mut HashMap<NodeId, &mut [f32]>,
        all: &[f32],
    ) -> Result<()> {
        let len = self.group_len(g);
        (0..self.replicas).try_for_each(|r| {
            let mut at = r * len;
            self.pieces(r, g).try_for_each(|(p, range)| {
                let n = range.len();
                param(params, p)?[range].copy_from_slice(&all[at..at + n]);
                at += n;
                Ok(())
            })
        })
    }
}

/// `count` contiguous runs of `sizes` (at least one item each, fewer runs than `count` when
/// there are fewer items) with about equal sums: run k ends once the running total reaches
/// k/count of the whole.
fn balanced_runs(sizes: &[usize], count: usize) -> Vec<Range<usize>> {
    let count = count.clamp(1, sizes.len().max(1));
    let total: usize = sizes.iter().sum();
    let mut runs = Vec::with_capacity(count);
    let (mut start, mut acc) = (0, 0);
    for (i, &n) in sizes.iter().enumerate() {
        acc += n;
        let left = sizes.len() - i - 1;
        let runs_left = count - runs.len() - 1;
        if runs_left > 0 && (acc * count >= total * (runs.len() + 1) || left == runs_left) {
            runs.push(start..i + 1);
            start = i + 1;
        }
    }
    runs.push(start..sizes.len());
    runs
}

fn param<'a>(params: &'a mut HashMap<NodeId, &mut [f32]>, p: NodeId) -> Result<&'a mut [f32]> {
    params
        .get_mut(&p)
        .map(|v| &mut **v)
        .ok_or_else(|| Error::internal(format!("ZeRO: parameter {p} is not on this stage")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::GradReduce;

    fn plan() -> ShardPlan {
        // 10 + 3 + 7 = 20 elements in one bucket over 3 replicas: chunks of 7 (the last 6).
        let one_bucket = GradReduce {
            bucket_bytes: 1 << 20,
            max_splits: 1,
            fp16_scale: None,
            scale: 1.0,
        };
        let order = [(NodeId(5), 10), (NodeId(2), 3), (NodeId(9), 7)];
        ShardPlan::new(&BucketLayout::new(&order, &one_bucket), 3, 1)
    }

    #[test]
    fn chunks_cross_parameters_and_cover_everything_once() {
        let p = plan();
        let owned: Vec<HashMap<NodeId, Range<usize>>> = (0..3).map(|r| p.owned(r)).collect();
        assert_eq!(owned[0], HashMap::from([(NodeId(5), 0..7)]));
        assert_eq!(
            owned[1],
            HashMap::from([(NodeId(5), 7..10), (NodeId(2), 0..3), (NodeId(9), 0..1)])
        );
        assert_eq!(owned[2], HashMap::from([(NodeId(9), 1..7)]));
        assert_eq!(
            (0..3).map(|r| p.owned_elements(r)).collect::<Vec<_>>(),
            [7, 7, 6]
        );
    }

    #[test]
    fn over_several_buckets_the_replicas_ranges_partition_every_parameter() {
        let order: Vec<(NodeId, usize)> = [40, 3, 17, 64, 1, 9]
            .iter()
            .enumerate()
            .map(|(i, &n)| (NodeId(i as u32), n))
            .collect();
        for (bucket_bytes, max_splits, replicas) in
            [(64, 8, 2), (100, 3, 3), (4, 20, 4), (1 << 20, 1, 5)]
        {
            let reduce = GradReduce {
                bucket_bytes,
                max_splits,
                fp16_scale: None,
                scale: 1.0,
            };
            let plan = ShardPlan::new(&BucketLayout::new(&order, &reduce), replicas, 1);
            for &(p, n) in &order {
                let mut covered = vec![0; n];
                for r in 0..replicas {
                    if let Some(range) = plan.owned(r).get(&p) {
                        range.clone().for_each(|i| covered[i] += 1);
                    }
                }
                assert!(
                    covered.iter().all(|&c| c == 1),
                    "{p} {bucket_bytes} {max_splits} {replicas}: {covered:?}"
                );
            }
            let sizes: Vec<usize> = (0..replicas).map(|r| plan.owned_elements(r)).collect();
            let buckets = plan.chunks.len();
            // Per bucket the pieces differ by less than R (the padding of its last chunk).
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= buckets * replicas,
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn gather_gives_every_replica_every_replicas_shard() {
        use crate::collectives::LocalGroup;
        let p = plan();
        let comms = LocalGroup::new(3, std::time::Duration::from_secs(5));
        let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .into_iter()
                .enumerate()
                .map(|(r, comm)| {
                    let mut p = p.clone();
                    s.spawn(move || {
                        // Each replica "updated" its own shard to 100*(r+1) + flat index.
                        let mut bufs = vec![vec![-1.0f32; 10], vec![-1.0; 3], vec![-1.0; 7]];
                        let ids = [NodeId(5), NodeId(2), NodeId(9)];
                        let offsets = [0, 10, 13];
                        for (i, id) in ids.iter().enumerate() {
                            if let Some(range) = p.owned(r).get(id) {
                                for j in range.clone() {
                                    bufs[i][j] = (100 * (r + 1) + offsets[i] + j) as f32;
                                }
                            }
                        }
                        let mut map: HashMap<NodeId, &mut [f32]> = ids
                            .iter()
                            .copied()
                            .zip(bufs.iter_mut().map(|b| b.as_mut_slice()))
                            .collect();
                        p.gather(r, 0, &mut map, &comm).unwrap();
                        bufs
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let owner = |flat: usize| flat / 7 + 1;
        let want: Vec<f32> = (0..20).map(|i| (100 * owner(i) + i) as f32).collect();
        for bufs in &results {
            assert_eq!(bufs.concat(), want);
        }
    }
}
