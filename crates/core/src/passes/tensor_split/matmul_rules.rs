//! Placement rules of matmuls: Megatron's column/row pairing, the router that stays whole,
//! packed q|k|v, row shards gathered before a column-parallel weight (a child of `rules`,
//! sharing its analysis).

use super::{Analysis, plan};
use crate::error::Result;
use crate::ir::{BinaryOp, NodeId, Op};
use crate::passes::tensor_split::{Conv, NodePlan, Place};

/// A matmul's axes: ranks, a's contracted (k) and row (m) axes, b's contracted and column (n).
#[derive(Debug, Clone, Copy)]
struct MatmulAxes {
    ra: usize,
    rb: usize,
    a_k: usize,
    a_m: usize,
    b_k: usize,
    b_n: usize,
}

impl MatmulAxes {
    fn new(ra: usize, rb: usize, ta: bool, tb: bool) -> Self {
        let (a_k, a_m) = if ta {
            (ra - 2, ra - 1)
        } else {
            (ra - 1, ra - 2)
        };
        let (b_k, b_n) = if tb {
            (rb - 1, rb - 2)
        } else {
            (rb - 2, rb - 1)
        };
        MatmulAxes {
            ra,
            rb,
            a_k,
            a_m,
            b_k,
            b_n,
        }
    }
}

impl Analysis<'_> {
    /// Whether `id`'s value reaches a softmax or layer norm through bias adds and pointwise
    /// ops (their last axis cannot be sharded).
    fn normalised(&self, id: NodeId) -> bool {
        let mut at = id;
        loop {
            let [next] = self.readers[at.index()].as_slice() else {
                return false;
            };
            match self.g.node(*next).op {
                Op::Softmax | Op::LayerNorm { .. } => return true,
                Op::Binary(BinaryOp::Add) | Op::Unary(_) | Op::Scale { .. } => at = *next,
                _ => return false,
            }
        }
    }

    /// How many packed parts a column-parallel output has: 3 when it feeds attention's q|k|v
    /// (through bias adds and pointwise ops), else 1.
    fn packing(&self, id: NodeId) -> usize {
        let mut at = id;
        loop {
            let [next] = self.readers[at.index()].as_slice() else {
                return 1;
            };
            match self.g.node(*next).op {
                Op::CausalAttention { .. } => return 3,
                Op::Binary(BinaryOp::Add) | Op::Unary(_) | Op::Scale { .. } => at = *next,
                _ => return 1,
            }
        }
    }

    /// A matmul's placements. With a weight the first reader decides: a replicated input makes
    /// it column-parallel (output sharded on its last axis), a column-sharded input makes it
    /// row-parallel (output a partial sum).
    pub(super) fn matmul(&mut self, id: NodeId, ta: bool, tb: bool) -> Result<NodePlan> {
        let node = self.g.node(id);
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let ax = MatmulAxes::new(self.dims(a).len(), self.dims(b).len(), ta, tb);
        let (a_k, b_k, b_n) = (ax.a_k, ax.b_k, ax.b_n);
        let mut pa = self.place(a);
        let mut conv_a = Conv::Keep;
        if pa == Place::Partial {
            (pa, conv_a) = (Place::Rep, Conv::Reduce);
        }
        // Sequence parallelism and colocated data-parallel rows: rows sharded before a
        // column-parallel weight are all-gathered (the partial gradient reduce-scattered back).
        // (Only rows: an expert-sharded buffer meets its experts' weights as it is.)
        let column = match self.places[b.index()] {
            None => true,
            Some(Place::Shard { axis, .. }) => axis == b_n,
            Some(_) => false,
        };
        let rows = self.sequence || self.colocate;
        if rows && column && matches!(pa, Place::Shard { axis, .. } if axis == ax.a_m) {
            // A weight that stays whole (a router) gives the rows their whole gradient, so
            // backward takes this device's rows instead of summing partial ones.
            let whole = self.undecided(b) && self.normalised(id);
            let conv = if whole {
                Conv::Gather
            } else {
                Conv::GatherPartial
            };
            (pa, conv_a) = (Place::Rep, conv);
        }
        if let Some(plan) = self.experts(id, a, b, pa, conv_a)? {
            return Ok(plan);
        }
        if self.undecided(b) {
            match pa {
                // A layer whose output is normalised over its last axis (a router's softmax)
                // stays whole: column shards would have to be gathered right away.
                Place::Rep if self.normalised(id) => {
                    self.place(b);
                }
                Place::Rep => {
                    let groups = self.packing(id);
                    self.decide_shard(b, b_n, groups, id)?;
                }
                Place::Shard { axis, groups } if axis == a_k => {
                    self.decide_shard(b, b_k, groups, id)?
                }
                _ => {}
            }
        }
        self.matmul_placement(id, ax, pa, conv_a)
    }

    /// The matmul's output placement once its inputs' placements are known.
    fn matmul_placement(
        &mut self,
        id: NodeId,
        ax: MatmulAxes,
        pa: Place,
        conv_a: Conv,
    ) -> Result<NodePlan> {
        let node = self.g.node(id);
        let b = node.inputs[1];
        let MatmulAxes {
            ra,
            rb,
            a_k,
            a_m,
            b_k,
            b_n,
        } = ax;
        let ro = node.shape.rank();
        let pb = self.place(b);
        // The reader's gradient is partial: a replicated input is read through `Copy`.
        let copy_a = match conv_a {
            Conv::Keep => Conv::Copy,
            Conv::Reduce => Conv::ReduceCopy,
            c => c,
        };
        let (out, convs) = match (pa, pb) {
            (Place::Rep, Place::Rep) => (Place::Rep, vec![conv_a, Conv::Keep]),
            (Place::Rep, Place::Shard { axis, groups }) if axis == b_n => {
                let axis = ro - 1;
                (Place::Shard { axis, groups }, vec![copy_a, Conv::Keep])
            }
            (
                Place::Shard { axis, groups },
                Place::Shard {
                    axis: bx,
                    groups: bg,
                },
            ) if axis == a_k && bx == b_k && groups == bg => {
                (Place::Partial, vec![conv_a, Conv::Keep])
            }
            (Place::Shard { axis, groups }, Place::Rep) if axis == a_k => (
                Place::Partial,
                vec![Conv::Keep, Conv::Shard { axis: b_k, groups }],
            ),
            (Place::Shard { axis, groups }, Place::Rep)
                if axis == a_m || (axis < ra - 2 && rb == 2) =>
            {
                let axis = axis + ro - ra;
                (Place::Shard { axis, groups }, vec![conv_a, Conv::Copy])
            }
            (
                Place::Shard { axis, groups },
                Place::Shard {
                    axis: bx,
                    groups: bg,
                },
            ) if axis < ra - 2 && ra == rb && axis == bx && groups == bg => {
                (Place::Shard { axis, groups }, vec![conv_a, Conv::Keep])
            }
            _ => return self.no_rule(id),
        };
        Ok(plan(out, convs, &node.op))
    }
}
