//! Where a stage's parameters live between uses, and ZeRO v2's sharded parameters: each
//! replica keeps one piece of every parameter; a program's `Fetch` all-gathers the pieces into
//! a whole parameter right before its first use in a phase, and `Free` drops it after the last.

use super::*;
use crate::exec::memory::grow_exact;

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
    /// The gather's buffers (own piece padded, all pieces), kept between fetches.
    scratch: (Vec<f32>, Vec<f32>),
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
        self.shards = Some(ParamShards {
            pieces,
            replica,
            scratch: (Vec::new(), Vec::new()),
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

    /// Fill `out` with the whole parameter `p` from every replica's piece.
    pub(super) fn gather_param(
        &mut self,
        p: NodeId,
        out: &mut B::Buffer,
        link: Option<&Link<'_>>,
    ) -> Result<()> {
        let comm = link.and_then(|l| l.params).ok_or_else(|| {
            Error::internal("ZeRO v2 gathers parameters over a channel this run lacks")
        })?;
        let shards = self.shards.as_mut().expect("is_sharded checked");
        let (mut mine, mut all) = std::mem::take(&mut shards.scratch);
        let pieces = shards.pieces[&p].clone();
        let most = pieces.iter().map(Range::len).max().unwrap_or(0);
        let own = pieces[shards.replica].len();
        grow_exact(&mut mine, most);
        grow_exact(&mut all, most * pieces.len());
        let buf = self.params[p.index()]
            .as_ref()
            .ok_or_else(|| Error::internal(format!("no piece of {p} on this replica")))?;
        let gathered = self
            .read_f32(buf, |v| {
                mine[..own].copy_from_slice(v);
                Ok(())
            })
            .and_then(|()| comm.all_gather(&mine, &mut all))
            .and_then(|()| {
                self.write_f32(out, numel(&self.dims[p.index()]), |d| {
                    for (r, range) in pieces.iter().enumerate() {
                        d[range.clone()].copy_from_slice(&all[r * most..r * most + range.len()]);
                    }
                    Ok(())
                })
            });
        self.shards.as_mut().expect("checked").scratch = (mine, all);
        gathered
    }

    /// Bytes of the parameter gather's buffers (host scratch, outside the device pool).
    pub fn gather_scratch_bytes(&self) -> usize {
        self.shards
            .as_ref()
            .map_or(0, |s| (s.scratch.0.capacity() + s.scratch.1.capacity()) * 4)
    }
}
