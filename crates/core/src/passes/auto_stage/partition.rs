//! Contiguous partitions of the compute units (forward ops in node order) into stages.
//!
//! `min_max_partition` is exact: a dynamic program over cut points that minimises the slowest
//! stage, comparing stages by `Key` = (training FLOPs, activation bytes) lexicographically, so
//! among partitions with the same slowest compute the one keeping the least activation memory on
//! its heaviest stage wins. A greedy fill (EPL's) can miss the optimum by a whole op; this cannot.
//! `partition_balance` is EPL's balance-op-num, kept for comparison.

/// A stage's or unit's cost: (training FLOPs, activation bytes), compared lexicographically.
pub(super) type Key = (u64, u64);

const NONE: Key = (u64::MAX, u64::MAX);

/// Where each stage starts (unit index; `starts[0] == 0`) and the slowest stage's cost.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Partition {
    pub starts: Vec<usize>,
    pub bottleneck: Key,
}

/// The contiguous partition of `keys` into exactly `stages` non-empty stages whose slowest stage
/// is smallest. `allowed[k]` (length n+1) says whether a stage may start at unit k; None allows
/// every cut. None when no such partition exists (fewer units or allowed cuts than stages).
///
/// dp[s][j] is the best slowest stage over units 0..j in s stages; the last stage i..j is tried
/// from short to long and the scan stops once that stage alone is no better than the best found,
/// since lengthening it only grows it. Worst case O(S * N^2), usually far less.
pub(super) fn min_max_partition(
    keys: &[Key],
    stages: usize,
    allowed: Option<&[bool]>,
) -> Option<Partition> {
    let n = keys.len();
    if stages == 0 || n < stages {
        return None;
    }
    let mut flops = vec![0u64; n + 1];
    let mut bytes = vec![0u64; n + 1];
    for (k, key) in keys.iter().enumerate() {
        flops[k + 1] = flops[k] + key.0;
        bytes[k + 1] = bytes[k] + key.1;
    }
    let seg = |i: usize, j: usize| (flops[j] - flops[i], bytes[j] - bytes[i]);
    let may_cut = |i: usize| allowed.is_none_or(|a| a[i]);
    let mut dp = vec![vec![NONE; n + 1]; stages + 1];
    let mut from = vec![vec![0usize; n + 1]; stages + 1];
    for (j, first) in dp[1].iter_mut().enumerate().skip(1) {
        *first = seg(0, j);
    }
    for s in 2..=stages {
        for j in s..=n {
            let mut best = NONE;
            for i in (s - 1..j).rev() {
                let last = seg(i, j);
                if last >= best {
                    break;
                }
                if !may_cut(i) || dp[s - 1][i] == NONE {
                    continue;
                }
                let v = last.max(dp[s - 1][i]);
                if v < best {
                    best = v;
                    from[s][j] = i;
                }
            }
            dp[s][j] = best;
        }
    }
    if dp[stages][n] == NONE {
        return None;
    }
    let mut starts = vec![0; stages];
    let mut j = n;
    for s in (2..=stages).rev() {
        j = from[s][j];
        starts[s - 1] = j;
    }
    Some(Partition {
        starts,
        bottleneck: dp[stages][n],
    })
}

/// Stage of every unit from stage starts (stages past the last unit stay empty).
pub(super) fn stage_per_unit(starts: &[usize], n: usize) -> Vec<usize> {
    (0..n)
        .map(|u| starts.iter().rposition(|&s| s <= u).unwrap_or(0))
        .collect()
}

/// EPL's `partition_buckets`: fill buckets left to right up to `capacity`; an op heavier than
/// the capacity gets a bucket of its own. None once more than `stages` buckets are needed.
fn partition_buckets(weights: &[u64], capacity: u64, stages: usize) -> Option<Vec<(usize, u64)>> {
    let mut buckets = vec![(0usize, 0u64)];
    for (i, &w) in weights.iter().enumerate() {
        let last = buckets.len() - 1;
        let (start, total) = buckets[last];
        if total + w > capacity {
            if total == 0 {
                buckets[last] = (start, w);
            } else {
                buckets.push((i, w));
            }
            if buckets.len() > stages {
                return None;
            }
        } else {
            buckets[last] = (start, total + w);
        }
    }
    Some(buckets)
}

/// EPL's `partition_balance`: the smallest capacity, from total/S up, whose greedy fill needs at
/// most S buckets. Returns stage starts. EPL may end with fewer than S buckets (9 unit ops into
/// 4 gives 3+3+3); weft's layout has S devices per replica, so the bucket with the most ops is
/// halved until there are S. (EPL rescales weights spread over more than 100 to 0..100; with
/// the unit weights used here that never applies, so it is left out.)
pub(super) fn partition_balance(weights: &[u64], stages: usize) -> Vec<usize> {
    if stages <= 1 {
        return vec![0];
    }
    let total: u64 = weights.iter().sum();
    let fill =
        (total / stages as u64..total).find_map(|cap| partition_buckets(weights, cap, stages));
    let mut starts: Vec<usize> = match fill {
        Some(buckets) => buckets.iter().map(|b| b.0).collect(),
        None => vec![0],
    };
    while starts.len() < stages {
        let mut ends = starts[1..].to_vec();
        ends.push(weights.len());
        let (widest, len) = starts
            .iter()
            .zip(&ends)
            .map(|(s, e)| e - s)
            .enumerate()
            .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))
            .unwrap_or((0, 0));
        if len < 2 {
            break;
        }
        starts.insert(widest + 1, starts[widest] + len.div_ceil(2));
    }
    starts
}
