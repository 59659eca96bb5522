//! The index arithmetic of the GPU group's collectives, apart from any GPU so it is tested on
//! every machine: how the elements of an all-reduce split into one chunk per rank, where a
//! chunk lies in a bucket of several buffers, and the kernel passes over many ranks.

use std::ops::Range;

/// Ranks one reduction kernel launch reads (`MAX_PEERS` in collective.cu).
pub const MAX_PEERS: usize = 16;

/// Rank `r`'s share of `total` elements cut into `n` near-equal chunks (the first
/// `total % n` chunks one longer).
pub fn chunk(total: usize, n: usize, r: usize) -> Range<usize> {
    let (base, extra) = (total / n, total % n);
    let start = r * base + r.min(extra);
    start..start + base + usize::from(r < extra)
}

/// One piece of a range over buffers laid end to end: the buffer, the elements of it, and
/// where they start within the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub buffer: usize,
    pub within: Range<usize>,
    pub at: usize,
}

/// The pieces of `range` over buffers of lengths `lens` laid end to end, in order.
pub fn segments(lens: &[usize], range: Range<usize>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut start = 0;
    for (buffer, &len) in lens.iter().enumerate() {
        let (lo, hi) = (range.start.max(start), range.end.min(start + len));
        if lo < hi {
            out.push(Segment {
                buffer,
                within: lo - start..hi - start,
                at: lo - range.start,
            });
        }
        start += len;
    }
    out
}

/// The kernel launches of a reduction over `n` ranks: consecutive runs of at most `MAX_PEERS`,
/// the first starting the fold, the others continuing it.
pub fn passes(n: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(MAX_PEERS)
        .map(|s| s..(s + MAX_PEERS).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::collectives::{ReduceOp, reduce_in_rank_order};

    #[test]
    fn chunks_cover_the_elements_once() {
        for (total, n) in [(10, 3), (2, 4), (0, 2), (17, 17), (1000, 7)] {
            let cs: Vec<_> = (0..n).map(|r| chunk(total, n, r)).collect();
            assert_eq!(cs[0].start, 0);
            assert_eq!(cs[n - 1].end, total);
            for w in cs.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len() >= w[1].len() && w[0].len() <= w[1].len() + 1);
            }
        }
        assert_eq!(chunk(10, 3, 0), 0..4);
        assert_eq!(chunk(10, 3, 2), 7..10);
    }

    #[test]
    fn segments_cut_a_range_at_buffer_edges() {
        let lens = [3, 0, 5, 2];
        assert_eq!(
            segments(&lens, 2..9),
            vec![
                Segment {
                    buffer: 0,
                    within: 2..3,
                    at: 0
                },
                Segment {
                    buffer: 2,
                    within: 0..5,
                    at: 1
                },
                Segment {
                    buffer: 3,
                    within: 0..1,
                    at: 6
                },
            ]
        );
        assert_eq!(segments(&lens, 4..4), vec![]);
    }

    /// collective_reduce_f32's loop, transcribed.
    fn kernel(src: &[&[f32]], out: &mut [f32], op_max: bool, first: bool, divide_by: usize) {
        for (i, o) in out.iter_mut().enumerate() {
            let (mut acc, mut k) = if first { (src[0][i], 1) } else { (*o, 0) };
            while k < src.len() {
                let x = src[k][i];
                acc = if op_max {
                    if acc.is_nan() || x.is_nan() {
                        f32::NAN
                    } else {
                        acc.max(x)
                    }
                } else {
                    acc + x
                };
                k += 1;
            }
            if divide_by > 0 {
                acc /= divide_by as f32;
            }
            *o = acc;
        }
    }

    /// The GPU group's all-reduce (each rank reduces its chunk of the bucket in passes, then
    /// every rank copies every chunk) transcribed: bit for bit the host's rank-order fold.
    #[test]
    fn the_group_all_reduce_equals_the_host_reduction() {
        let n = 20; // two passes
        let lens = [7, 1, 12];
        let total: usize = lens.iter().sum();
        let rank_bufs: Vec<Vec<Vec<f32>>> = (0..n)
            .map(|r| {
                lens.iter()
                    .enumerate()
                    .map(|(b, &l)| {
                        (0..l)
                            .map(|i| {
                                ((r * 31 + b * 7 + i) as f32).sin() * 1e3f32.powi(i as i32 % 3)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let flat: Vec<Vec<f32>> = rank_bufs.iter().map(|b| b.concat()).collect();
            let refs: Vec<&[f32]> = flat.iter().map(|v| v.as_slice()).collect();
            let mut want = vec![0.0; total];
            reduce_in_rank_order(&refs, op, &mut want);
            let scratch: Vec<Vec<f32>> = (0..n)
                .map(|r| {
                    let mine = chunk(total, n, r);
                    let mut s = vec![0.0; mine.len()];
                    for seg in segments(&lens, mine) {
                        let out = &mut s[seg.at..seg.at + seg.within.len()];
                        let ps = passes(n);
                        for (pi, pass) in ps.iter().enumerate() {
                            let src: Vec<&[f32]> = pass
                                .clone()
                                .map(|k| &rank_bufs[k][seg.buffer][seg.within.clone()])
                                .collect();
                            let last = pi + 1 == ps.len();
                            let divide = if last && op == ReduceOp::Mean { n } else { 0 };
                            kernel(&src, out, op == ReduceOp::Max, pi == 0, divide);
                        }
                    }
                    s
                })
                .collect();
            let mut got: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; l]).collect();
            for (r, s) in scratch.iter().enumerate() {
                for seg in segments(&lens, chunk(total, n, r)) {
                    got[seg.buffer][seg.within.clone()]
                        .copy_from_slice(&s[seg.at..seg.at + seg.within.len()]);
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.concat()), bits(&want), "{op}");
        }
    }
}
