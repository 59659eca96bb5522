//! Where a stage's parameters live between uses, and ZeRO v2's sharded parameters: each
//! replica keeps one piece of every parameter; a program's `Fetch` all-gathers the pieces into
//! a whole parameter right before its first use in a phase, and `Free` drops it after the last.

use super::*;
use std::sync::mpsc;

/// Where a stage's parameters live between uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residency {
    /// `offload.level='v0'`: parameters and optimizer state are host memory.
    pub offload: bool,
    /// `zero.level='v2'`: each replica keeps a piece of every parameter.
    pub sharded: bool,
}

impl Residency {
    /// Whether programs fetch each parameter before use.
    pub fn fetches(self) -> bool {
        self.offload || self.sharded
    }
}

/// ZeRO v2's pieces of each sharded parameter.
pub(super) struct ParamShards {
    /// Every replica's range of each sharded parameter, in replica order (contiguous and
    /// ascending; empty where a replica owns none of it).
    pieces: HashMap<NodeId, Vec<Range<usize>>>,
    replica: usize,
    /// The gathers' buffer pairs (own piece padded, all pieces), kept between fetches: two,
    /// one being gathered ahead while the other is copied out, each made at once for the
    /// largest parameter so that nothing grows during a step.
    free: Vec<(Vec<f32>, Vec<f32>)>,
    /// The prefetcher of the program running now.
    prefetch: Option<Prefetch>,
}

/// A gather to run: the parameter, its own piece (padded), the buffer for all pieces.
type Request = (NodeId, Vec<f32>, Vec<f32>);
/// A gather done: the request's buffers back, and whether it succeeded.
type Gathered = (NodeId, Vec<f32>, Vec<f32>, Result<()>);

/// The channel to a program's prefetcher thread and where the program is in its fetches.
pub(super) struct Prefetch {
    requests: mpsc::Sender<Request>,
    results: mpsc::Receiver<Gathered>,
    order: Vec<NodeId>,
    next: usize,
}

impl<B: Backend> Executor<B> {
    /// ZeRO v2: keep only `replica`'s piece of each parameter in `pieces` (every replica's
    /// range, replica order). The whole parameters must be equal on every replica already.
    pub fn shard_params(
        &mut self,
        pieces: HashMap<NodeId, Vec<Range<usize>>>,
        replica: usize,
    ) -> Result<()> {
        let home = self.home(Category::Parameters);
        for (&p, ranges) in &pieces {
            let Some(buf) = self.params[p.index()].as_ref() else {
                continue;
            };
            let own = ranges[replica].clone();
            let len = numel(&self.dims[p.index()]);
            let piece = self.read_f32(buf, |v| Ok(v[own.clone()].to_vec()))?;
            self.params[p.index()] = Some(self.backend.upload(&HostData::F32(piece))?);
            self.pool.drop_buffer(home, DType::F32, len);
            self.pool.adopt(home, DType::F32, own.len());
        }
        let most = pieces
            .values()
            .flat_map(|r| r.iter().map(Range::len))
            .max()
            .unwrap_or(0);
        let replicas = pieces.values().next().map_or(1, Vec::len);
        let pair = || {
            (
                Vec::with_capacity(most),
                Vec::with_capacity(most * replicas),
            )
        };
        self.shards = Some(ParamShards {
            pieces,
            replica,
            free: vec![pair(), pair()],
            prefetch: None,
        });
        // The whole parameters were only ever the initial values' staging: peaks count from
        // the pieces.
        self.pool.reset_peaks();
        Ok(())
    }

    pub(super) fn is_sharded(&self, p: NodeId) -> bool {
        self.shards
            .as_ref()
            .is_some_and(|s| s.pieces.contains_key(&p))
    }

    /// Every replica's range of a sharded parameter (None: the parameter is whole here).
    pub fn param_pieces(&self, name: &str) -> Result<Option<Vec<Range<usize>>>> {
        let id = self.param_id(name)?;
        Ok(self
            .shards
            .as_ref()
            .and_then(|s| s.pieces.get(&id).cloned()))
    }

    /// This replica's range of a sharded parameter.
    pub(super) fn own_piece(&self, p: NodeId) -> Option<Range<usize>> {
        let s = self.shards.as_ref()?;
        s.pieces.get(&p).map(|r| r[s.replica].clone())
    }

    /// The range of `param`'s buffer an update covers: its owned range of the whole
    /// parameter, or all of a piece this replica keeps alone.
    pub(super) fn update_range(&self, p: NodeId) -> Range<usize> {
        let owned = self.owned_range(p);
        if self.is_sharded(p) {
            0..owned.len()
        } else {
            owned
        }
    }

    /// Fill `out` with the whole parameter `p` from every replica's piece, gathered ahead by
    /// the program's prefetcher (`run_with` starts one whenever a program gathers: without the
    /// gather channel there is none, and the fetch fails here).
    pub(super) fn gather_param(&mut self, p: NodeId, out: &mut B::Buffer) -> Result<()> {
        if self.shards.as_ref().is_none_or(|s| s.prefetch.is_none()) {
            return Err(Error::internal(
                "ZeRO v2 gathers parameters over a channel this run lacks",
            ));
        }
        let pair = self.take_prefetched(p)?;
        let pieces = self.shards_mut().pieces[&p].clone();
        let most = pieces.iter().map(Range::len).max().unwrap_or(0);
        let all = &pair.1;
        let written = self.write_f32(out, numel(&self.dims[p.index()]), |d| {
            for (r, range) in pieces.iter().enumerate() {
                d[range.clone()].copy_from_slice(&all[r * most..r * most + range.len()]);
            }
            Ok(())
        });
        self.shards_mut().free.push(pair);
        written
    }

    fn shards_mut(&mut self) -> &mut ParamShards {
        self.shards.as_mut().expect("sharded parameters")
    }

    /// A free buffer pair, the own piece of `p` copied into its first (padded to the largest
    /// piece of `p`), the second sized for all pieces.
    fn own_piece_in_buffer(&mut self, p: NodeId) -> Result<(Vec<f32>, Vec<f32>)> {
        let shards = self.shards_mut();
        let pieces = &shards.pieces[&p];
        let most = pieces.iter().map(Range::len).max().unwrap_or(0);
        let (own, replicas) = (pieces[shards.replica].len(), pieces.len());
        let (mut mine, mut all) = shards.free.pop().unwrap_or_default();
        mine.resize(most, 0.0);
        all.resize(most * replicas, 0.0);
        let buf = self.params[p.index()]
            .as_ref()
            .ok_or_else(|| Error::internal(format!("no piece of {p} on this replica")))?;
        self.read_f32(buf, |v| {
            mine[..own].copy_from_slice(v);
            Ok(())
        })?;
        Ok((mine, all))
    }

    /// The parameters `actions` fetch by gathering, in order, when a channel can gather them.
    pub(super) fn prefetch_order<'l>(
        &self,
        actions: &[Action],
        link: Option<&Link<'l, B::Buffer>>,
    ) -> Option<(Vec<NodeId>, &'l dyn Communicator)> {
        let comm = link.and_then(|l| l.params)?;
        let order: Vec<NodeId> = actions
            .iter()
            .filter_map(|a| match *a {
                Action::Fetch(p) if self.is_sharded(p) => Some(p),
                _ => None,
            })
            .collect();
        (!order.is_empty()).then_some((order, comm))
    }

    /// Run `actions` with a prefetcher thread gathering the next parameter while the current
    /// one is in use (one gather ahead, so a layer's gather overlaps the layer before).
    pub(super) fn run_prefetching(
        &mut self,
        order: Vec<NodeId>,
        comm: &dyn Communicator,
        run: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        std::thread::scope(|scope| {
            let (requests, work) = mpsc::channel::<Request>();
            let (done, results) = mpsc::channel::<Gathered>();
            scope.spawn(move || {
                for (p, mine, mut all) in work {
                    let r = comm.all_gather(&mine, &mut all);
                    if done.send((p, mine, all, r)).is_err() {
                        break;
                    }
                }
            });
            let first = order[0];
            self.shards_mut().prefetch = Some(Prefetch {
                requests,
                results,
                order,
                next: 0,
            });
            let result = self.request_gather(first).and_then(|()| run(self));
            if let Err(e) = &result {
                // A gather still in flight must not wait for peers that will never come.
                comm.abort(&e.to_string());
            }
            self.shards_mut().prefetch = None;
            result
        })
    }

    /// Hand the prefetcher `p`'s piece to gather.
    fn request_gather(&mut self, p: NodeId) -> Result<()> {
        let (mine, all) = self.own_piece_in_buffer(p)?;
        let pf = self.shards_mut().prefetch.as_ref().expect("prefetching");
        pf.requests
            .send((p, mine, all))
            .map_err(|_| Error::internal("the parameter prefetcher stopped"))
    }

    /// `p` gathered by the prefetcher, after asking it for the next parameter.
    fn take_prefetched(&mut self, p: NodeId) -> Result<(Vec<f32>, Vec<f32>)> {
        let pf = self.shards_mut().prefetch.as_mut().expect("prefetching");
        let k = pf.next;
        if pf.order.get(k) != Some(&p) {
            return Err(Error::internal(format!(
                "fetch of {p} out of the prefetch order"
            )));
        }
        pf.next += 1;
        if let Some(&q) = pf.order.get(k + 1) {
            self.request_gather(q)?;
        }
        let pf = self.shards_mut().prefetch.as_ref().expect("prefetching");
        let (q, mine, all, r) = pf
            .results
            .recv()
            .map_err(|_| Error::internal("the parameter prefetcher stopped"))?;
        debug_assert_eq!(q, p);
        if let Err(e) = r {
            self.shards_mut().free.push((mine, all));
            return Err(e);
        }
        Ok((mine, all))
    }

    /// Bytes of the parameter gather's buffers (host scratch, outside the device pool).
    pub fn gather_scratch_bytes(&self) -> usize {
        self.shards.as_ref().map_or(0, |s| {
            let cap = |v: &Vec<f32>| v.capacity() * 4;
            s.free.iter().map(|(a, b)| cap(a) + cap(b)).sum()
        })
    }
}
