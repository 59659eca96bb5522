//! Gradient fusion: many small all-reduces cost far more than a few big ones, so gradients are
//! packed into contiguous buckets, one collective per bucket.
//!
//! Layout rule. Tensors keep the order their gradients become ready (the reverse of the forward
//! order), so a bucket can be launched as soon as its last tensor is ready, and a tensor is never
//! split. `max_splits` (EPL's key) is a hard cap on the bucket count; `bucket_size_bytes`
//! (weft's target) bounds each bucket unless that would need more than `max_splits` buckets or
//! a single tensor is bigger. Within the count they allow, buckets are byte-balanced: the
//! largest bucket is as small as a contiguous split can make it.

use super::communicator::collective_error;
use crate::error::Result;

/// Bytes of one gradient element: gradients are communicated as f32.
const ELEMENT_BYTES: usize = 4;

/// One fused bucket: tensor ids in ready order and their total element count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub tensors: Vec<usize>,
    pub elements: usize,
}

/// Split `tensors` — `(id, element count)` in the order their gradients become ready — into
/// buckets (see the module doc for the rule). Zero limits count as 1. An empty list gives no
/// buckets.
pub fn plan_buckets(
    tensors: &[(usize, usize)],
    bucket_size_bytes: usize,
    max_splits: usize,
) -> Vec<Bucket> {
    if tensors.is_empty() {
        return Vec::new();
    }
    let bytes: Vec<usize> = tensors.iter().map(|&(_, n)| n * ELEMENT_BYTES).collect();
    let target = bucket_count(&bytes, bucket_size_bytes.max(1)).min(max_splits.max(1));
    let cap = smallest_cap(&bytes, target);
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut filled = 0;
    for (&(id, elements), &size) in tensors.iter().zip(&bytes) {
        match buckets.last_mut() {
            Some(b) if filled + size <= cap => {
                b.tensors.push(id);
                b.elements += elements;
                filled += size;
            }
            _ => {
                buckets.push(Bucket {
                    tensors: vec![id],
                    elements,
                });
                filled = size;
            }
        }
    }
    buckets
}

/// How many buckets a greedy fill makes when no bucket of two or more tensors may exceed `cap`
/// bytes. For a contiguous split this greedy count is the fewest possible, and it never grows
/// as `cap` grows, which is what makes the binary search in `smallest_cap` valid.
fn bucket_count(bytes: &[usize], cap: usize) -> usize {
    let mut count = 0;
    let mut filled = 0;
    for &size in bytes {
        if count == 0 || filled + size > cap {
            count += 1;
            filled = size;
        } else {
            filled += size;
        }
    }
    count
}

/// The smallest cap whose greedy fill needs at most `target` buckets.
fn smallest_cap(bytes: &[usize], target: usize) -> usize {
    let (mut lo, mut hi) = (1, bytes.iter().sum::<usize>().max(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if bucket_count(bytes, mid) <= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    hi
}

/// Copy `parts` back to back into `bucket`, whose length must be their total.
pub fn flatten_into(parts: &[&[f32]], bucket: &mut [f32]) -> Result<()> {
    check_total(parts.iter().map(|p| p.len()), bucket.len(), "flatten_into")?;
    let mut offset = 0;
    for part in parts {
        bucket[offset..offset + part.len()].copy_from_slice(part);
        offset += part.len();
    }
    Ok(())
}

/// Copy consecutive slices of `bucket` back into `parts`, the inverse of `flatten_into`.
pub fn unflatten_from(bucket: &[f32], parts: &mut [&mut [f32]]) -> Result<()> {
    check_total(
        parts.iter().map(|p| p.len()),
        bucket.len(),
        "unflatten_from",
    )?;
    let mut offset = 0;
    for part in parts.iter_mut() {
        let len = part.len();
        part.copy_from_slice(&bucket[offset..offset + len]);
        offset += len;
    }
    Ok(())
}

fn check_total(lens: impl Iterator<Item = usize>, bucket: usize, what: &str) -> Result<()> {
    let lens: Vec<usize> = lens.collect();
    let total: usize = lens.iter().sum();
    if total == bucket {
        return Ok(());
    }
    Err(collective_error(format!(
        "{what}: {} tensors hold {total} f32 but the bucket has {bucket} f32",
        lens.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KB: usize = 1024;

    /// Tensor ids 10, 11, ... with the given element counts, in ready order.
    fn tensors(elements: &[usize]) -> Vec<(usize, usize)> {
        elements
            .iter()
            .enumerate()
            .map(|(i, &n)| (10 + i, n))
            .collect()
    }

    fn layout(buckets: &[Bucket]) -> Vec<Vec<usize>> {
        buckets.iter().map(|b| b.tensors.clone()).collect()
    }

    #[test]
    fn size_target_decides_when_max_splits_allows() {
        // Six 400-byte tensors; 1000-byte buckets hold two each.
        let t = tensors(&[100; 6]);
        let b = plan_buckets(&t, 1000, 10);
        assert_eq!(layout(&b), [vec![10, 11], vec![12, 13], vec![14, 15]]);
        assert!(b.iter().all(|b| b.elements == 200));
        // 1199 bytes still fits only two; 1200 fits three.
        assert_eq!(plan_buckets(&t, 1199, 10).len(), 3);
        assert_eq!(
            layout(&plan_buckets(&t, 1200, 10)),
            [vec![10, 11, 12], vec![13, 14, 15]]
        );
    }

    #[test]
    fn buckets_are_balanced_within_the_count() {
        // Greedy 16-byte buckets would be [4,4,2] tensors; balancing cannot lower the largest
        // bucket below 16 bytes with 3 buckets, so the layout keeps the big ones first.
        let b = plan_buckets(&tensors(&[1; 10]), 16, 10);
        assert_eq!(b.iter().map(|b| b.elements).collect::<Vec<_>>(), [4, 4, 2]);
        // Sizes 3,1,1,3 elements with room for 5 elements: greedy fill gives [3,1,1][3]; the
        // balanced split with two buckets is [3,1][1,3].
        let b = plan_buckets(&tensors(&[3, 1, 1, 3]), 20, 10);
        assert_eq!(layout(&b), [vec![10, 11], vec![12, 13]]);
    }

    #[test]
    fn max_splits_is_a_hard_cap() {
        // Six 400-byte tensors, 400-byte target: six buckets wanted, four allowed. The smallest
        // cap that fits in four buckets is 800 bytes, which needs only three.
        let b = plan_buckets(&tensors(&[100; 6]), 400, 4);
        assert_eq!(layout(&b), [vec![10, 11], vec![12, 13], vec![14, 15]]);
        // One split: everything in one bucket.
        let b = plan_buckets(&tensors(&[100; 6]), 400, 1);
        assert_eq!(
            b,
            [Bucket {
                tensors: (10..16).collect(),
                elements: 600
            }]
        );
        // Uneven sizes, 2 splits over 1+2+3+4+5 = 15 elements: [1,2,3,4] vs [5] has max 10,
        // [1,2,3][4,5] has max 9, the best.
        let b = plan_buckets(&tensors(&[1, 2, 3, 4, 5]), 4, 2);
        assert_eq!(layout(&b), [vec![10, 11, 12], vec![13, 14]]);
        assert_eq!(b.iter().map(|b| b.elements).collect::<Vec<_>>(), [6, 9]);
    }

    #[test]
    fn an_oversized_tensor_gets_its_own_bucket_and_is_never_split() {
        // 400 B, 20 KB, 400 B, 400 B with 1000-byte buckets: the big one is alone and the small
        // ones after it still pair up within 1000 bytes.
        let b = plan_buckets(&tensors(&[100, 5 * KB, 100, 100]), 1000, 8);
        assert_eq!(layout(&b), [vec![10], vec![11], vec![12, 13]]);
        assert_eq!(b[1].elements, 5 * KB);
        // The small tensors around it must not be merged into a 20 KB "cap".
        assert!(
            b.iter()
                .filter(|b| b.tensors.len() > 1)
                .all(|b| b.elements * 4 <= 1000)
        );
    }

    #[test]
    fn ids_follow_ready_order_and_edge_cases_hold() {
        let t = vec![(7, 100), (3, 100), (9, 100)];
        assert_eq!(layout(&plan_buckets(&t, 800, 5)), [vec![7, 3], vec![9]]);
        assert!(plan_buckets(&[], 800, 5).is_empty());
        // Zero limits behave as 1; empty tensors ride along.
        assert_eq!(plan_buckets(&t, 0, 0).len(), 1);
        let b = plan_buckets(&[(1, 0), (2, 0)], 800, 5);
        assert_eq!(
            b,
            [Bucket {
                tensors: vec![1, 2],
                elements: 0
            }]
        );
    }

    #[test]
    fn every_layout_respects_both_limits() {
        // A sweep over sizes and limits: never more than max_splits buckets, every tensor once in
        // order, and multi-tensor buckets within the target whenever the count allows it.
        let sizes: Vec<usize> = (0..40).map(|i| (i * 37 % 23) * 50 + 1).collect();
        let t = tensors(&sizes);
        for bucket_bytes in [1, 200, 1000, 4000, 20_000, 1 << 30] {
            for max_splits in [1, 2, 3, 5, 8, 40, 100] {
                let b = plan_buckets(&t, bucket_bytes, max_splits);
                assert!(b.len() <= max_splits);
                let ids: Vec<usize> = b.iter().flat_map(|b| b.tensors.clone()).collect();
                assert_eq!(ids, (10..50).collect::<Vec<_>>());
                let total: usize = b.iter().map(|b| b.elements).sum();
                assert_eq!(total, sizes.iter().sum::<usize>());
                let bytes: Vec<usize> = sizes.iter().map(|n| n * 4).collect();
                if bucket_count(&bytes, bucket_bytes) <= max_splits {
                    let multi = b.iter().filter(|b| b.tensors.len() > 1);
                    assert!(multi.clone().all(|b| b.elements * 4 <= bucket_bytes));
                }
            }
        }
    }

    #[test]
    fn flatten_and_unflatten_round_trip() {
        let (a, b, c) = ([1.0, 2.0], [3.0], [4.0, 5.0, 6.0]);
        let mut bucket = [0.0; 6];
        flatten_into(&[&a, &b, &c], &mut bucket).unwrap();
        assert_eq!(bucket, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        bucket.iter_mut().for_each(|x| *x *= 10.0);
        let (mut x, mut y, mut z) = ([0.0; 2], [0.0; 1], [0.0; 3]);
        unflatten_from(&bucket, &mut [&mut x, &mut y, &mut z]).unwrap();
        assert_eq!((x, y, z), ([10.0, 20.0], [30.0], [40.0, 50.0, 60.0]));
    }

    #[test]
    fn flatten_size_mismatch_is_an_error() {
        let mut bucket = [0.0; 4];
        let err = flatten_into(&[&[1.0, 2.0], &[3.0]], &mut bucket).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flatten_into: 2 tensors hold 3 f32 but the bucket has 4 f32"
        );
        let err = unflatten_from(&bucket, &mut [&mut [0.0; 5]]).unwrap_err();
        assert_eq!(err.code(), "WEFT_COLLECTIVE");
        assert_eq!(
            err.to_string(),
            "unflatten_from: 1 tensors hold 5 f32 but the bucket has 4 f32"
        );
    }
}
