//! Placement rules of the ops that follow their operands' layout: broadcasting binary ops and
//! reshapes (a child of `rules`, sharing its analysis).

use super::{Analysis, plan, to_rep};
use crate::error::Result;
use crate::ir::{BinaryOp, NodeId, Op, Shape};
use crate::passes::tensor_split::{Conv, NodePlan, Place};

impl Analysis<'_> {
    /// Broadcasting binary ops: shards must agree on the output axis; a replicated operand
    /// without that axis is read as is (its gradient all-reduced), one with it is cut.
    pub(super) fn binary(&mut self, id: NodeId, b: BinaryOp) -> Result<NodePlan> {
        let node = self.g.node(id);
        let ro = node.shape.rank();
        let ins = [node.inputs[0], node.inputs[1]];
        let mut known: Vec<Option<Place>> = ins
            .iter()
            .map(|&x| (!self.undecided(x)).then(|| self.places[x.index()].unwrap_or(Place::Rep)))
            .collect();
        let both_partial = known.iter().all(|p| *p == Some(Place::Partial));
        if both_partial && matches!(b, BinaryOp::Add | BinaryOp::Sub) {
            return Ok(plan(Place::Partial, vec![Conv::Keep, Conv::Keep], &node.op));
        }
        // Sequence parallelism: partial sums are reduce-scattered along their rows.
        let mut first = [Conv::Keep, Conv::Keep];
        for (i, &x) in ins.iter().enumerate() {
            if self.sequence && known[i] == Some(Place::Partial) {
                let (p, conv) = self.scatter(id, x)?;
                (known[i], first[i]) = (Some(p), conv);
            }
        }
        let partial = known.iter().flatten().any(|p| *p == Place::Partial);
        // The shard (in output axes) every sharded operand must agree on.
        let mut shard: Option<(usize, usize)> = None;
        for (&x, p) in ins.iter().zip(&known) {
            if let Some(Place::Shard { axis, groups }) = p {
                let at = (axis + ro - self.dims(x).len(), *groups);
                if shard.is_some_and(|s| s != at) {
                    return self.no_rule(id);
                }
                shard = Some(at);
            }
        }
        let mut convs = Vec::new();
        let Some((axis, groups)) = shard else {
            for (&x, p) in ins.iter().zip(&known) {
                convs.push(if partial {
                    to_rep(p.unwrap_or(Place::Rep))
                } else {
                    Conv::Keep
                });
                self.place(x);
            }
            return Ok(plan(Place::Rep, convs, &node.op));
        };
        for ((&x, p), first) in ins.iter().zip(&known).zip(first) {
            let rank = self.dims(x).len();
            let carries = axis + rank >= ro && self.dims(x)[axis + rank - ro] > 1;
            let own = (axis + rank).saturating_sub(ro);
            convs.push(match p {
                Some(Place::Shard { .. }) => first,
                None if carries => {
                    self.decide_shard(x, own, groups, id)?;
                    Conv::Keep
                }
                Some(Place::Partial) => return self.no_rule(id),
                _ if carries => Conv::Shard { axis: own, groups },
                _ => {
                    self.place(x);
                    Conv::Copy
                }
            });
        }
        Ok(plan(Place::Shard { axis, groups }, convs, &node.op))
    }

    /// A reshape keeps a shard when the sharded axis and everything after it map onto a
    /// suffix of the new dims whose first axis divides over the devices.
    pub(super) fn reshape(&mut self, id: NodeId, shape: &Shape) -> Result<NodePlan> {
        let node = self.g.node(id);
        let x = node.inputs[0];
        let Place::Shard { axis, groups } = self.place(x) else {
            let p = self.place(x);
            return Ok(plan(p, vec![Conv::Keep], &node.op));
        };
        let (din, dout) = (self.dims(x), shape.to_vec());
        let suffix: usize = din[axis..].iter().product();
        let found = (0..dout.len()).rev().find(|&j| {
            dout[j..].iter().product::<usize>() == suffix
                && dout[j].is_multiple_of(groups * self.n)
                && (groups == 1 || dout[j..] == din[axis..])
        });
        let (j, groups) = match found {
            Some(j) => (j, groups),
            None => match merged(&din, &dout, axis) {
                // Dims merged into the sharded axis from the left become packed groups.
                Some((j, outer)) => (j, groups * outer),
                None => return self.no_rule(id),
            },
        };
        let mut local = dout;
        local[j] /= self.n;
        let op = Op::Reshape {
            shape: Shape::fixed(&local),
        };
        Ok(plan(
            Place::Shard { axis: j, groups },
            vec![Conv::Keep],
            &op,
        ))
    }
}

/// Where `din`'s `axis` lands when a reshape to `dout` merges it with the dims before it:
/// (its new axis k, the product of the merged outer dims), when `din[..k]` and `dout[..k]`
/// agree, `dout[k]` is `din[k..=axis]` merged and the dims after it are unchanged.
fn merged(din: &[usize], dout: &[usize], axis: usize) -> Option<(usize, usize)> {
    (0..=axis).find_map(|k| {
        let outer: usize = din[k..axis].iter().product();
        let ok = dout.get(..k) == din.get(..k)
            && dout.get(k) == Some(&(outer * din[axis]))
            && dout.get(k + 1..) == din.get(axis + 1..);
        ok.then_some((k, outer))
    })
}
