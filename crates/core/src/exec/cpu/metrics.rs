//! Forward-only metric kernels: argmax over the last axis (i32 indices), elementwise equality
//! (f32 0/1), and the two steps of a vocabulary-sharded argmax (`ArgmaxBid`, `BidIndex`).

use super::util::{F32In, check_out_len};
use crate::error::{Error, Result};
use crate::exec::HostData;

/// Index of the first largest value of each row of `width` (ties to the lowest index).
pub(super) fn argmax(x: F32In<'_>, y: &mut [i32]) -> Result<()> {
    let width = last(x.shape);
    for (row, out) in x.data.chunks(width).zip(y.iter_mut()) {
        let mut best = 0;
        for (c, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = c;
            }
        }
        *out = index_i32("argmax", best)?;
    }
    Ok(())
}

/// Each row's bid: `-(start + c)` for its first column equal to the row's global max, else -inf.
pub(super) fn argmax_bid(x: F32In<'_>, max: &[f32], start: usize, y: &mut [f32]) {
    let width = last(x.shape);
    for ((row, &m), out) in x.data.chunks(width).zip(max).zip(y.iter_mut()) {
        *out = match row.iter().position(|&v| v == m) {
            Some(c) => -((start + c) as f32),
            None => f32::NEG_INFINITY,
        };
    }
}

/// The index each all-reduced bid names. A bid that is not a negated index (no shard held the
/// max: a NaN row) is an error naming the value.
pub(super) fn bid_index(bids: &[f32], y: &mut [i32]) -> Result<()> {
    for (&b, out) in bids.iter().zip(y.iter_mut()) {
        let i = -b;
        if !(i >= 0.0 && i.fract() == 0.0 && i < (1 << 24) as f32) {
            return Err(Error::shape(
                "bid_index",
                format!("bid {b} names no column (is a row of the logits NaN?)"),
            ));
        }
        *out = i as i32;
    }
    Ok(())
}

/// 1 where `a` and `b` (one dtype, one length) are equal, else 0.
pub(super) fn equal(a: &HostData, b: &HostData, y: &mut [f32]) -> Result<()> {
    fn each<T: PartialEq>(a: &[T], b: &[T], y: &mut [f32]) {
        for ((a, b), out) in a.iter().zip(b).zip(y.iter_mut()) {
            *out = if a == b { 1.0 } else { 0.0 };
        }
    }
    match (a, b) {
        (HostData::F32(a), HostData::F32(b)) => each(a, b, y),
        (HostData::I32(a), HostData::I32(b)) => each(a, b, y),
        _ => {
            return Err(Error::DType {
                what: "equal inputs".into(),
                expected: "both f32 or both i32".into(),
                got: format!("{} and {}", a.dtype(), b.dtype()),
            });
        }
    }
    Ok(())
}

/// The i32 output buffer of an index-producing op.
pub(super) fn i32_out<'o>(
    op: &str,
    out: &'o mut HostData,
    shape: &[usize],
) -> Result<&'o mut [i32]> {
    check_out_len(op, out, shape)?;
    match out {
        HostData::I32(v) => Ok(v),
        other => Err(Error::DType {
            what: format!("{op} output"),
            expected: "i32".into(),
            got: other.dtype().to_string(),
        }),
    }
}

fn last(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1).max(1)
}

fn index_i32(op: &str, i: usize) -> Result<i32> {
    i32::try_from(i).map_err(|_| Error::shape(op, format!("index {i} exceeds i32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_lowest_index_of_a_tie() {
        let x = [1.0, 3.0, 3.0, -1.0, -5.0, -2.0, -2.0, -7.0];
        let mut y = [9; 2];
        argmax(
            F32In {
                data: &x,
                shape: &[2, 4],
            },
            &mut y,
        )
        .unwrap();
        assert_eq!(y, [1, 1]);
    }

    #[test]
    fn bids_name_the_first_column_holding_the_max() {
        let x = [1.0, 3.0, 3.0, 0.0, 0.0, 0.0];
        let mut bids = [0.0; 2];
        argmax_bid(
            F32In {
                data: &x,
                shape: &[2, 3],
            },
            &[3.0, 5.0],
            6,
            &mut bids,
        );
        assert_eq!(bids, [-7.0, f32::NEG_INFINITY]);
        let mut y = [0; 1];
        bid_index(&bids[..1], &mut y).unwrap();
        assert_eq!(y, [7]);
        let e = bid_index(&bids[1..], &mut y).unwrap_err();
        assert!(e.to_string().contains("bid -inf names no column"), "{e}");
    }

    #[test]
    fn equal_compares_i32_and_f32_and_refuses_a_mix() {
        let mut y = [0.0; 3];
        equal(
            &HostData::I32(vec![1, 2, 3]),
            &HostData::I32(vec![1, 0, 3]),
            &mut y,
        )
        .unwrap();
        assert_eq!(y, [1.0, 0.0, 1.0]);
        equal(
            &HostData::F32(vec![0.5, 2.0, 3.0]),
            &HostData::F32(vec![0.5, 2.0, -3.0]),
            &mut y,
        )
        .unwrap();
        assert_eq!(y, [1.0, 1.0, 0.0]);
        let e = equal(
            &HostData::F32(vec![1.0; 3]),
            &HostData::I32(vec![1; 3]),
            &mut y,
        );
        assert_eq!(e.unwrap_err().code(), "WEFT_DTYPE");
    }
}
