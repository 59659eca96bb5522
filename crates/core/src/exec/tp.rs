//! Tensor-parallel data layout: cutting a whole tensor into the shard one device keeps, and
//! assembling the whole from every device's shard. Both read an axis as `[groups, parts,
//! chunk]` (see `ir::Cut`), so a packed q|k|v weight gives each device whole heads of each.

use crate::error::{Error, Result};
use crate::ir::{Cut, Op};
use crate::tensor::padded_len;

/// The ops of tensor, vocabulary and expert parallelism and the metrics (argmax, equal), which
/// only the CPU backend (and, for the collectives, the executor) runs in this build.
pub fn cpu_only(op: &Op) -> bool {
    matches!(
        op,
        Op::TpCopy
            | Op::TpReduce
            | Op::TpGather { .. }
            | Op::TpShard { .. }
            | Op::TpGatherPartial { .. }
            | Op::TpReduceScatter { .. }
            | Op::TpMax
            | Op::ColumnMask { .. }
            | Op::VocabOneHot { .. }
            | Op::MoeGate { .. }
            | Op::MoeGateBackward { .. }
            | Op::MoeDispatch { .. }
            | Op::MoeDispatchBackward { .. }
            | Op::MoeCombine { .. }
            | Op::MoeCombineBackward { .. }
            | Op::MoeCombineGates { .. }
            | Op::TpAllToAll
            | Op::Argmax
            | Op::Equal
            | Op::ArgmaxBid { .. }
            | Op::BidIndex
    )
}

/// (outer, chunk, inner) of whole dims `dims` under `cut`: the axis is `groups x parts x chunk`.
fn geometry(dims: &[usize], cut: Cut) -> Result<(usize, usize, usize)> {
    let n = *dims
        .get(cut.axis)
        .ok_or_else(|| Error::internal(format!("cut {cut} of dims {dims:?}: no such axis")))?;
    let step = cut.groups * cut.parts;
    if step == 0 || !n.is_multiple_of(step) {
        return Err(Error::internal(format!(
            "cut {cut} of dims {dims:?}: axis {} has {n} elements",
            cut.axis
        )));
    }
    let outer = dims[..cut.axis].iter().product();
    let inner = dims[cut.axis + 1..].iter().product();
    Ok((outer, n / step, inner))
}

/// `dims` with the cut axis padded so that it divides into `groups x parts` (an indivisible
/// vocabulary), and that axis's padded length.
fn padded_dims(dims: &[usize], cut: Cut) -> Result<(Vec<usize>, usize)> {
    let mut padded = dims.to_vec();
    let axis = padded
        .get_mut(cut.axis)
        .ok_or_else(|| Error::internal(format!("cut {cut} of dims {dims:?}: no such axis")))?;
    *axis = padded_len(*axis, cut.groups * cut.parts);
    let plen = *axis;
    Ok((padded, plen))
}

/// Checks that `cut` divides the padded `dims` (a shard parameter's initialiser), so that
/// `init_values` can cut it.
pub fn check_cut(dims: &[usize], cut: Cut) -> Result<()> {
    geometry(&padded_dims(dims, cut)?.0, cut).map(|_| ())
}

/// Shard `index` of the whole tensor `whole` (dims `full`), its cut axis padded with zeros
/// first when it does not divide: what a tensor-parallel device keeps of a whole parameter.
pub fn cut_padded(whole: &[f32], full: &[usize], cut: Cut, index: usize) -> Result<Vec<f32>> {
    let (padded, plen) = padded_dims(full, cut)?;
    self::cut(&pad(whole, full, cut.axis, plen), &padded, cut, index)
}

/// `cut_padded`'s inverse: the whole tensor (dims `full`) from every device's shard in rank
/// order, padding dropped.
pub fn assemble_padded(shards: &[f32], full: &[usize], cut: Cut) -> Result<Vec<f32>> {
    let (padded, plen) = padded_dims(full, cut)?;
    let mut whole = vec![0.0; shards.len()];
    assemble(shards, &padded, cut, &mut whole)?;
    Ok(unpad(&whole, full, cut.axis, plen))
}

/// Shard `index` of the whole tensor `whole` (dims `dims`) into `out`.
pub fn cut_into(
    whole: &[f32],
    dims: &[usize],
    cut: Cut,
    index: usize,
    out: &mut [f32],
) -> Result<()> {
    let (outer, chunk, inner) = geometry(dims, cut)?;
    let run = chunk * inner;
    if whole.len() != outer * cut.groups * cut.parts * run || out.len() != outer * cut.groups * run
    {
        return Err(Error::internal(format!(
            "cut {cut} of dims {dims:?}: buffers of {} and {} elements",
            whole.len(),
            out.len()
        )));
    }
    for row in 0..outer * cut.groups {
        let src = (row * cut.parts + index) * run;
        out[row * run..(row + 1) * run].copy_from_slice(&whole[src..src + run]);
    }
    Ok(())
}

/// Shard `index` of `whole` as a new vector.
pub fn cut(whole: &[f32], dims: &[usize], cut: Cut, index: usize) -> Result<Vec<f32>> {
    let mut out = vec![0.0; whole.len() / cut.parts.max(1)];
    cut_into(whole, dims, cut, index, &mut out)?;
    Ok(out)
}

/// The whole tensor (dims `dims`) from every device's shard, concatenated in rank order as an
/// all-gather returns them.
pub fn assemble(shards: &[f32], dims: &[usize], cut: Cut, out: &mut [f32]) -> Result<()> {
    let (outer, chunk, inner) = geometry(dims, cut)?;
    let run = chunk * inner;
    let local = outer * cut.groups * run;
    if shards.len() != local * cut.parts || out.len() != shards.len() {
        return Err(Error::internal(format!(
            "assemble {cut} of dims {dims:?}: buffers of {} and {} elements",
            shards.len(),
            out.len()
        )));
    }
    for rank in 0..cut.parts {
        for row in 0..outer * cut.groups {
            let src = rank * local + row * run;
            let dst = (row * cut.parts + rank) * run;
            out[dst..dst + run].copy_from_slice(&shards[src..src + run]);
        }
    }
    Ok(())
}

/// `Op::ColumnMask`: rows of `width` columns; column `c` is kept when `start + c < valid`.
pub fn column_mask(x: &[f32], width: usize, start: usize, valid: usize, fill: f32, y: &mut [f32]) {
    let keep = valid.saturating_sub(start).min(width);
    for (xr, yr) in x.chunks(width).zip(y.chunks_mut(width)) {
        yr[..keep].copy_from_slice(&xr[..keep]);
        yr[keep..].fill(fill);
    }
}

/// `Op::VocabOneHot`: one row of `width` per label, 1 at `label - start` when in range.
pub fn one_hot(labels: &[i32], start: usize, width: usize, y: &mut [f32]) -> Result<()> {
    y.fill(0.0);
    for (row, &l) in y.chunks_mut(width).zip(labels) {
        let l = usize::try_from(l).map_err(|_| Error::Shape {
            op: "vocab_one_hot".into(),
            message: format!("label {l} is negative"),
        })?;
        if (start..start + width).contains(&l) {
            row[l - start] = 1.0;
        }
    }
    Ok(())
}

/// The whole tensor padded with zeros along `axis` from `dims[axis]` to `padded`.
pub fn pad(whole: &[f32], dims: &[usize], axis: usize, padded: usize) -> Vec<f32> {
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let (run, prun) = (dims[axis] * inner, padded * inner);
    let mut out = vec![0.0; outer * prun];
    for o in 0..outer {
        out[o * prun..o * prun + run].copy_from_slice(&whole[o * run..(o + 1) * run]);
    }
    out
}

/// `pad`'s inverse: the first `dims[axis]` entries of the padded axis.
pub fn unpad(padded: &[f32], dims: &[usize], axis: usize, plen: usize) -> Vec<f32> {
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let (run, prun) = (dims[axis] * inner, plen * inner);
    (0..outer)
        .flat_map(|o| padded[o * prun..o * prun + run].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_then_assemble_is_the_identity_with_packed_groups() {
        // [2, 12] cut on axis 1 as 3 groups x 2 parts x 2: device 0 keeps columns 0,1 4,5 8,9.
        let dims = [2, 12];
        let whole: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let c = Cut {
            axis: 1,
            groups: 3,
            parts: 2,
        };
        let s0 = cut(&whole, &dims, c, 0).unwrap();
        let s1 = cut(&whole, &dims, c, 1).unwrap();
        assert_eq!(s0, [0., 1., 4., 5., 8., 9., 12., 13., 16., 17., 20., 21.]);
        let mut out = vec![0.0; 24];
        assemble(&[s0, s1].concat(), &dims, c, &mut out).unwrap();
        assert_eq!(out, whole);
        let bad = Cut { groups: 5, ..c };
        assert!(cut(&whole, &dims, bad, 0).is_err());
    }
}
