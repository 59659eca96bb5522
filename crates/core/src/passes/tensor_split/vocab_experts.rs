//! Placement rules of vocabulary parallelism (embedding, cross-entropy, argmax) and expert
//! parallelism (per-expert weights; tokens dispatched to their experts' devices and combined
//! back by all-to-all), a child of `rules` sharing its analysis.

use super::{Analysis, plan};
use crate::error::Result;
use crate::ir::NodeId;
use crate::passes::tensor_split::{Conv, Expand, NodePlan, Place};

impl Analysis<'_> {
    /// Vocabulary parallelism: the table is cut by rows (an indivisible vocabulary padded with
    /// zero rows that no index reaches), each device embeds the indices in its range and the
    /// rows sum across the group.
    pub(super) fn embedding(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let table = node.inputs[0];
        if self.undecided(table) {
            self.places[table.index()] = Some(Place::Shard { axis: 0, groups: 1 });
        }
        match self.place(table) {
            Place::Shard { axis: 0, groups: 1 } => Ok(NodePlan {
                expand: Some(Expand::VocabEmbedding),
                ..plan(Place::Partial, vec![Conv::Keep, Conv::Keep], &node.op)
            }),
            _ => self.no_rule(id),
        }
    }

    /// Cross-entropy of logits sharded on the vocabulary, without gathering them.
    pub(super) fn cross_entropy(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let logits = node.inputs[0];
        match self.place(logits) {
            Place::Shard { axis: 1, groups: 1 } => {
                let valid = self.dims(logits)[1];
                Ok(NodePlan {
                    expand: Some(Expand::VocabCrossEntropy { valid }),
                    ..plan(Place::Rep, vec![Conv::Keep, Conv::Keep], &node.op)
                })
            }
            _ => self.no_rule(id),
        }
    }

    /// Argmax of values sharded on the last axis (the vocabulary), without gathering them.
    pub(super) fn argmax(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let x = node.inputs[0];
        let last = self.dims(x).len() - 1;
        match self.place(x) {
            Place::Shard { axis, groups: 1 } if axis == last => {
                let valid = self.dims(x)[last];
                Ok(NodePlan {
                    expand: Some(Expand::VocabArgmax { valid }),
                    ..plan(Place::Rep, vec![Conv::Keep], &node.op)
                })
            }
            _ => self.no_rule(id),
        }
    }

    /// Expert parallelism: a weight with a leading expert axis (`[E, in, out]`) read by a
    /// replicated `[N, in]` is cut by experts (each device runs its experts on every token);
    /// the next per-expert matmul, reading `[E/N, ...]`, cuts its weight the same way.
    pub(super) fn experts(
        &mut self,
        id: NodeId,
        a: NodeId,
        b: NodeId,
        pa: Place,
        conv_a: Conv,
    ) -> Result<Option<NodePlan>> {
        let (ra, rb) = (self.dims(a).len(), self.dims(b).len());
        if !self.undecided(b) || rb < 3 {
            return Ok(None);
        }
        let experts = self.dims(b)[0];
        let axis = match pa {
            Place::Rep if ra == 2 => 0,
            Place::Shard { axis: 0, groups: 1 } if ra == rb => 0,
            _ => return Ok(None),
        };
        if !experts.is_multiple_of(self.n) {
            return Err(self.error(
                id,
                format!(
                    "parameter '{}' holds {experts} experts (axis 0), which do not divide over {} \
                     devices",
                    self.param_name(b),
                    self.n
                ),
            ));
        }
        self.places[b.index()] = Some(Place::Shard { axis, groups: 1 });
        let conv_a = match (pa, conv_a) {
            (Place::Rep, Conv::Keep) => Conv::Copy,
            (Place::Rep, Conv::Reduce) => Conv::ReduceCopy,
            (_, c) => c,
        };
        let out = Place::Shard { axis, groups: 1 };
        Ok(Some(plan(
            out,
            vec![conv_a, Conv::Keep],
            &self.g.node(id).op,
        )))
    }

    /// Expert parallelism's dispatch: each device takes its slice of the tokens (cut from
    /// replicated ones, or already its rows),
    /// places them in their experts' slots (numbered over all tokens, so every device agrees)
    /// and an all-to-all sends each device the slots of its experts: the buffer comes out
    /// sharded by expert.
    pub(super) fn moe_dispatch(&mut self, id: NodeId, top_k: usize, cf: f32) -> Result<NodePlan> {
        let node = self.g.node(id);
        let (x, gates) = (node.inputs[0], node.inputs[1]);
        let (tokens, experts) = (self.dims(gates)[0], self.dims(gates)[1]);
        let convs = match (self.place(x), self.place(gates)) {
            (Place::Rep, Place::Rep) => vec![Conv::Shard { axis: 0, groups: 1 }, Conv::Keep],
            // Rows already cut among the devices (a colocated replicate backbone's, or
            // sequence parallelism's): each device's part is the slice it dispatches.
            (Place::Shard { axis: 0, groups: 1 }, Place::Rep) => vec![Conv::Keep, Conv::Keep],
            _ => return self.no_rule(id),
        };
        if !experts.is_multiple_of(self.n) {
            let msg = format!("{experts} experts do not divide over {} devices", self.n);
            return Err(self.error(id, msg));
        }
        if !tokens.is_multiple_of(self.n) {
            return Err(self.error(
                id,
                format!(
                    "{tokens} tokens per micro-batch do not divide over {} devices (expert \
                     parallelism cuts the tokens among them)",
                    self.n
                ),
            ));
        }
        Ok(NodePlan {
            expand: Some(Expand::MoeDispatch {
                top_k,
                capacity_factor: cf,
            }),
            ..plan(Place::Shard { axis: 0, groups: 1 }, convs, &node.op)
        })
    }

    /// Expert parallelism's combine: an all-to-all returns every expert's slots to every device,
    /// which combines its slice of the tokens; the slices are all-gathered, so the result is
    /// replicated like the layer's input. The gates' gradient is partial (each device's rows),
    /// so they are read through `Copy`.
    pub(super) fn moe_combine(&mut self, id: NodeId) -> Result<NodePlan> {
        let node = self.g.node(id);
        let (buf, gates) = (node.inputs[0], node.inputs[1]);
        match (self.place(buf), self.place(gates)) {
            (Place::Shard { axis: 0, groups: 1 }, Place::Rep) => Ok(NodePlan {
                expand: Some(Expand::MoeCombine),
                ..plan(Place::Rep, vec![Conv::Keep, Conv::Copy], &node.op)
            }),
            _ => self.no_rule(id),
        }
    }
}
