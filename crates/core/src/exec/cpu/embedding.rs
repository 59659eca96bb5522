//! Embedding lookup and its backward (row scatter-add).
//!
//! Indices come from user batches, so every one is checked against [0, V) before any row is
//! touched: an out-of-range token id is an `Error::Batch` naming it, never a panic.

use super::util::{F32In, I32In, expect_shape, for_rows};
use crate::error::{Error, Result};

/// Every index in [0, vocab), else `Error::Batch` naming the first offender and V.
fn check_indices(op: &str, idx: I32In, vocab: usize) -> Result<()> {
    match idx
        .data
        .iter()
        .enumerate()
        .find(|&(_, &i)| i < 0 || i as usize >= vocab)
    {
        Some((pos, &i)) => Err(Error::batch(format!(
            "{op}: index {i} at position {pos} is outside the table's rows [0, {vocab})"
        ))),
        None => Ok(()),
    }
}

/// (table [V, C], idx i32 [...]) -> out [..., C], out row r = table row idx[r].
pub(super) fn embedding_forward(
    table: F32In,
    idx: I32In,
    out: &mut [f32],
    out_shape: &[usize],
) -> Result<()> {
    let &[v, c] = table.shape else {
        return Err(Error::shape(
            "embedding",
            format!("table must be [V, C], got {:?}", table.shape),
        ));
    };
    let mut want = idx.shape.to_vec();
    want.push(c);
    expect_shape("embedding", "output", out_shape, &want)?;
    check_indices("embedding", idx, v)?;
    for_rows(out, c, |r, o| {
        let i = idx.data[r] as usize;
        o.copy_from_slice(&table.data[i * c..][..c]);
    });
    Ok(())
}

/// (idx i32 [...], dy [..., C]) -> dtable [vocab, C]: dy rows added into their index's row.
/// Sequential: repeated indices make the scatter racy, and it is a small pass over dy.
pub(super) fn embedding_backward(
    idx: I32In,
    dy: F32In,
    vocab: usize,
    dtable: &mut [f32],
    dtable_shape: &[usize],
) -> Result<()> {
    let c = dy.shape.last().copied().unwrap_or(0);
    let mut want = idx.shape.to_vec();
    want.push(c);
    expect_shape("embedding_backward", "dy", dy.shape, &want)?;
    expect_shape("embedding_backward", "output", dtable_shape, &[vocab, c])?;
    check_indices("embedding_backward", idx, vocab)?;
    dtable.fill(0.0);
    if c == 0 {
        return Ok(());
    }
    for (&i, g) in idx.data.iter().zip(dy.data.chunks_exact(c)) {
        let row = &mut dtable[i as usize * c..][..c];
        for (d, &v) in row.iter_mut().zip(g) {
            *d += v;
        }
    }
    Ok(())
}
