//! ZeRO v0: optimizer state sharded across a stage's data-parallel replicas. Gradients are
//! all-reduced as without ZeRO; each replica then updates only its shard of the parameters
//! (keeping Adam's moments for that shard alone) and an all-gather gives every replica the
//! whole updated parameters again.
//!
//! A stage's parameters are laid end to end in `grad_order` (identical on every replica) and
//! the flat range is cut into `replicas` equal chunks: replica r owns chunk r, whatever
//! parameters it crosses, so each replica holds 1/R of the state to within one element.
//! Because the update is elementwise, a shard's update equals the same elements of the whole
//! update: ZeRO training is bit-identical to plain data parallelism.

use crate::collectives::Communicator;
use crate::error::{Error, Result};
use crate::ir::NodeId;
use std::collections::HashMap;
use std::ops::Range;

/// How a stage's parameters are sharded over its data-parallel replicas.
#[derive(Debug, Clone)]
pub(super) struct ShardPlan {
    /// Parameters end to end: (parameter, element count), flat offsets by prefix sum.
    order: Vec<(NodeId, usize)>,
    replicas: usize,
    /// Elements per replica (the last chunk may be short; the gather pads it).
    chunk: usize,
    /// The gather's buffers (own shard, all shards), kept between steps: fresh megabytes
    /// would page-fault on every step.
    scratch: (Vec<f32>, Vec<f32>),
}

impl ShardPlan {
    pub fn new(order: Vec<(NodeId, usize)>, replicas: usize) -> ShardPlan {
        let total: usize = order.iter().map(|(_, n)| n).sum();
        ShardPlan {
            order,
            replicas,
            chunk: total.div_ceil(replicas.max(1)),
            scratch: (Vec::new(), Vec::new()),
        }
    }

    /// Each parameter's flat range.
    fn spans(&self) -> impl Iterator<Item = (NodeId, Range<usize>)> + '_ {
        self.order.iter().scan(0, |offset, &(p, n)| {
            let start = *offset;
            *offset += n;
            Some((p, start..start + n))
        })
    }

    fn replica_range(&self, replica: usize) -> Range<usize> {
        replica * self.chunk..(replica + 1) * self.chunk
    }

    /// Replica `replica`'s range of each parameter it owns part of (parameter coordinates).
    pub fn owned(&self, replica: usize) -> HashMap<NodeId, Range<usize>> {
        let mine = self.replica_range(replica);
        self.spans()
            .filter_map(|(p, span)| {
                let (lo, hi) = (span.start.max(mine.start), span.end.min(mine.end));
                (lo < hi).then(|| (p, lo - span.start..hi - span.start))
            })
            .collect()
    }

    /// Elements of optimizer state a replica keeps per state buffer (for the memory plan).
    pub fn owned_elements(&self, replica: usize) -> usize {
        self.owned(replica).values().map(Range::len).sum()
    }

    /// After each replica updated its shard: all-gather the shards so that every replica's
    /// `params` hold the whole updated parameters.
    pub fn gather(
        &mut self,
        replica: usize,
        params: &mut HashMap<NodeId, &mut [f32]>,
        group: &dyn Communicator,
    ) -> Result<()> {
        let mine = self.replica_range(replica);
        let (mut shard, mut all) = std::mem::take(&mut self.scratch);
        shard.resize(self.chunk, 0.0);
        all.resize(self.chunk * self.replicas, 0.0);
        for (p, span) in self.spans() {
            let (lo, hi) = (span.start.max(mine.start), span.end.min(mine.end));
            if lo < hi {
                let values = param(params, p)?;
                shard[lo - mine.start..hi - mine.start]
                    .copy_from_slice(&values[lo - span.start..hi - span.start]);
            }
        }
        let gathered = group.all_gather(&shard, &mut all);
        let written = gathered.and_then(|()| {
            self.spans()
                .try_for_each(|(p, span)| Ok(param(params, p)?.copy_from_slice(&all[span])))
        });
        self.scratch = (shard, all);
        written
    }
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

    fn plan() -> ShardPlan {
        // 10 + 3 + 7 = 20 elements over 3 replicas: chunks of 7 (the last holds 6).
        ShardPlan::new(vec![(NodeId(5), 10), (NodeId(2), 3), (NodeId(9), 7)], 3)
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
                        p.gather(r, &mut map, &comm).unwrap();
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
