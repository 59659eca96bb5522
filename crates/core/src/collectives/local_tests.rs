//! Tests of the in-process engine: each rank is a std thread. Every collective is compared bit
//! for bit with a serial reference on 1, 2, 3, 4 and 8 ranks, subgroups run concurrently, and
//! point-to-point messages keep their per-tag order. Failures: `failure_tests`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use super::{Communicator, LocalCommunicator, LocalGroup, ReduceOp};
use crate::error::Error;

const SIZES: [usize; 5] = [1, 2, 3, 4, 8];
const OPS: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max];
pub(super) const LONG: Duration = Duration::from_secs(20);
pub(super) const SHORT: Duration = Duration::from_millis(200);

/// Run `f` on every rank, one thread each, through the trait object (so the trait stays
/// object-safe), and collect the results in rank order.
pub(super) fn on_ranks<T: Send>(
    comms: &[LocalCommunicator],
    f: impl Fn(&dyn Communicator) -> T + Sync,
) -> Vec<T> {
    thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = comms.iter().map(|c| s.spawn(move || f(c))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank thread panicked"))
            .collect()
    })
}

/// Deterministic values of mixed magnitude, so that f32 sums depend on the order of the adds.
fn data(rank: usize, len: usize, salt: u64) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let mut z =
                ((rank as u64) << 32 ^ i as u64 ^ salt << 48).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            unit * [1e-3, 1.0, 1e3, 1e6][(z & 3) as usize]
        })
        .collect()
}

/// The serial reference: rank 0 op rank 1 op ... in f32, written independently of the engine.
fn serial_reduce(inputs: &[Vec<f32>], op: ReduceOp) -> Vec<f32> {
    let mut out = inputs[0].clone();
    for input in &inputs[1..] {
        for (o, &x) in out.iter_mut().zip(input) {
            *o = match op {
                ReduceOp::Sum | ReduceOp::Mean => *o + x,
                ReduceOp::Max if o.is_nan() || x.is_nan() => f32::NAN,
                ReduceOp::Max => {
                    if x > *o {
                        x
                    } else {
                        *o
                    }
                }
            };
        }
    }
    if op == ReduceOp::Mean {
        out.iter_mut().for_each(|x| *x /= inputs.len() as f32);
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

pub(super) fn message(err: Error) -> String {
    match err {
        Error::Collective { message } => message,
        other => panic!("expected Error::Collective, got {other:?}"),
    }
}

/// Make ranks arrive in reverse order, so "first come, first added" would be caught.
fn stagger(c: &dyn Communicator) {
    thread::sleep(Duration::from_millis(((c.size() - c.rank()) * 3) as u64));
}

#[test]
fn all_reduce_matches_the_serial_reference_bit_for_bit() {
    for n in SIZES {
        for (salt, op) in OPS.into_iter().enumerate() {
            let inputs: Vec<Vec<f32>> = (0..n).map(|r| data(r, 37, salt as u64)).collect();
            let expected = serial_reduce(&inputs, op);
            let comms = LocalGroup::new(n, LONG);
            let got = on_ranks(&comms, |c| {
                let mut buf = inputs[c.rank()].clone();
                stagger(c);
                c.all_reduce(&mut buf, op).unwrap();
                buf
            });
            for buf in got {
                assert_eq!(bits(&buf), bits(&expected), "all_reduce {op} on {n} ranks");
            }
        }
    }
}

#[test]
fn arrival_order_never_changes_the_sum() {
    // 1e8 + 1 == 1e8 in f32: rank order gives ((1e8 + 1) - 1e8) + 1 = 1, reverse order 0.
    let values = [1e8f32, 1.0, -1e8, 1.0];
    let reversed = values.iter().rev().fold(0.0f32, |a, &x| a + x);
    assert_ne!(reversed, 1.0, "the test values must be order-sensitive");
    let comms = LocalGroup::new(4, LONG);
    for round in 0..5 {
        let got = on_ranks(&comms, |c| {
            // Alternate between reverse and forward arrival.
            let r = if round % 2 == 0 {
                c.size() - c.rank()
            } else {
                c.rank() + 1
            };
            thread::sleep(Duration::from_millis(r as u64 * 5));
            let mut buf = [values[c.rank()]];
            c.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
            buf[0]
        });
        assert_eq!(got, [1.0; 4], "round {round}");
    }
}

#[test]
fn all_gather_concatenates_rank_major() {
    for n in SIZES {
        let inputs: Vec<Vec<f32>> = (0..n).map(|r| data(r, 5, 7)).collect();
        let expected = inputs.concat();
        let got = on_ranks(&LocalGroup::new(n, LONG), |c| {
            let mut out = vec![0.0; 5 * n];
            stagger(c);
            c.all_gather(&inputs[c.rank()], &mut out).unwrap();
            out
        });
        for out in got {
            assert_eq!(bits(&out), bits(&expected), "all_gather on {n} ranks");
        }
    }
}

#[test]
fn reduce_scatter_gives_rank_r_the_r_th_chunk() {
    for n in SIZES {
        for op in OPS {
            let m = 6;
            let inputs: Vec<Vec<f32>> = (0..n).map(|r| data(r, m * n, 11)).collect();
            let reduced = serial_reduce(&inputs, op);
            let got = on_ranks(&LocalGroup::new(n, LONG), |c| {
                let mut out = vec![0.0; m];
                stagger(c);
                c.reduce_scatter(&inputs[c.rank()], &mut out, op).unwrap();
                out
            });
            for (r, out) in got.iter().enumerate() {
                assert_eq!(
                    bits(out),
                    bits(&reduced[r * m..(r + 1) * m]),
                    "{op} on {n} ranks"
                );
            }
        }
    }
}

#[test]
fn broadcast_copies_the_root_everywhere() {
    for n in SIZES {
        for root in 0..n {
            let inputs: Vec<Vec<f32>> = (0..n).map(|r| data(r, 9, 3)).collect();
            let got = on_ranks(&LocalGroup::new(n, LONG), |c| {
                let mut buf = inputs[c.rank()].clone();
                stagger(c);
                c.broadcast(&mut buf, root).unwrap();
                buf
            });
            for buf in got {
                assert_eq!(bits(&buf), bits(&inputs[root]), "root {root} of {n}");
            }
        }
    }
}

#[test]
fn reduce_fills_the_root_and_leaves_the_others() {
    for n in SIZES {
        for root in 0..n {
            let op = OPS[root % 3];
            let inputs: Vec<Vec<f32>> = (0..n).map(|r| data(r, 13, 5)).collect();
            let expected = serial_reduce(&inputs, op);
            let got = on_ranks(&LocalGroup::new(n, LONG), |c| {
                let mut buf = inputs[c.rank()].clone();
                stagger(c);
                c.reduce(&mut buf, root, op).unwrap();
                buf
            });
            for (r, buf) in got.iter().enumerate() {
                let want = if r == root { &expected } else { &inputs[r] };
                assert_eq!(
                    bits(buf),
                    bits(want),
                    "reduce {op} root {root} of {n}, rank {r}"
                );
            }
        }
    }
}

#[test]
fn all_to_all_transposes_chunks() {
    for n in SIZES {
        let m = 3;
        let inputs: Vec<Vec<f32>> = (0..n).map(|r| data(r, m * n, 9)).collect();
        let got = on_ranks(&LocalGroup::new(n, LONG), |c| {
            let mut out = vec![0.0; m * n];
            stagger(c);
            c.all_to_all(&inputs[c.rank()], &mut out).unwrap();
            out
        });
        for (j, out) in got.iter().enumerate() {
            let expected: Vec<f32> = (0..n)
                .flat_map(|i| inputs[i][j * m..(j + 1) * m].to_vec())
                .collect();
            assert_eq!(bits(out), bits(&expected), "all_to_all rank {j} of {n}");
        }
    }
}

#[test]
fn barrier_waits_for_everyone() {
    for n in SIZES {
        let arrived = AtomicUsize::new(0);
        on_ranks(&LocalGroup::new(n, LONG), |c| {
            for round in 1..=3 {
                stagger(c);
                arrived.fetch_add(1, Ordering::SeqCst);
                c.barrier().unwrap();
                // Nobody leaves barrier k before all have arrived at it.
                assert!(arrived.load(Ordering::SeqCst) >= round * n);
                c.barrier().unwrap();
            }
        });
    }
}

#[test]
fn long_mixed_sequences_stay_in_step() {
    // Many rounds back to back with varying sizes: exercises two live rounds at once and the
    // cleanup of finished ones.
    let n = 4;
    let got = on_ranks(&LocalGroup::new(n, LONG), |c| {
        let mut checksum = 0.0f64;
        for k in 0..200usize {
            let len = 1 + k % 17;
            let mut buf = vec![(c.rank() + k) as f32; len];
            c.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
            let mut gathered = vec![0.0; len * n];
            c.all_gather(&buf, &mut gathered).unwrap();
            checksum += gathered.iter().map(|&x| f64::from(x)).sum::<f64>();
        }
        checksum
    });
    let expected: f64 = (0..200usize)
        .map(|k| ((1 + k % 17) * n * (0..n).map(|r| r + k).sum::<usize>()) as f64)
        .sum();
    assert_eq!(got, vec![expected; n]);
}

#[test]
fn subgroups_run_independently_and_concurrently() {
    // 4 ranks: 2 stages x 2 replicas. Data-parallel groups {0,2} and {1,3}, pipeline pairs
    // {0,1} and {2,3}; every rank uses both kinds of group in the same loop.
    let dp_groups = vec![vec![0, 2], vec![1, 3]];
    let pp_groups = vec![vec![0, 1], vec![2, 3]];
    let mut dp: Vec<Option<LocalCommunicator>> = (0..4).map(|_| None).collect();
    let mut pp: Vec<Option<LocalCommunicator>> = (0..4).map(|_| None).collect();
    for comms in LocalGroup::subgroups(4, &dp_groups, LONG).unwrap() {
        for c in comms {
            let r = c.global_rank();
            dp[r] = Some(c);
        }
    }
    for comms in LocalGroup::subgroups(4, &pp_groups, LONG).unwrap() {
        for c in comms {
            let r = c.global_rank();
            pp[r] = Some(c);
        }
    }
    let pairs: Vec<_> = dp
        .into_iter()
        .zip(pp)
        .map(|(d, p)| (d.unwrap(), p.unwrap()))
        .collect();
    assert_eq!(pairs[2].0.group_ranks(), [0, 2]);
    assert_eq!((pairs[2].0.rank(), pairs[2].1.rank()), (1, 0));
    let results: Vec<Vec<f32>> = thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(dp, pp)| {
                s.spawn(move || {
                    let g = dp.global_rank();
                    let mut seen = Vec::new();
                    for step in 0..20u64 {
                        let mut grad = [g as f32 + step as f32];
                        dp.all_reduce(&mut grad, ReduceOp::Sum).unwrap();
                        // Stage 0 sends its reduced gradient to stage 1, which answers with the
                        // value plus 100 x its own reduced gradient.
                        let mut reply = [0.0];
                        if pp.rank() == 0 {
                            pp.send(&grad, 1, step).unwrap();
                            pp.recv(&mut reply, 1, step).unwrap();
                        } else {
                            pp.recv(&mut reply, 0, step).unwrap();
                            pp.send(&[reply[0] + 100.0 * grad[0]], 0, step).unwrap();
                        }
                        seen.extend([grad[0], reply[0]]);
                    }
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for step in 0..20 {
        let s = step as f32;
        let (even, odd) = (2.0 + 2.0 * s, 4.0 + 2.0 * s); // 0+2, 1+3 plus the step on each
        let answer = even + 100.0 * odd;
        let expect = [[even, answer], [odd, even], [even, answer], [odd, even]];
        for (r, seen) in results.iter().enumerate() {
            assert_eq!(
                seen[2 * step..2 * step + 2],
                expect[r],
                "rank {r} step {step}"
            );
        }
    }
}

#[test]
fn sends_are_buffered_and_ordered_per_tag() {
    // One thread plays both ranks: sends must not block, and each tag is its own FIFO.
    let comms = LocalGroup::new(2, SHORT);
    for (value, tag) in [(1.0, 2), (2.0, 1), (3.0, 1), (4.0, 2)] {
        comms[0].send(&[value, -value], 1, tag).unwrap();
    }
    let mut buf = [0.0; 2];
    for (tag, value) in [(1, 2.0), (1, 3.0), (2, 1.0), (2, 4.0)] {
        comms[1].recv(&mut buf, 0, tag).unwrap();
        assert_eq!(buf, [value, -value], "tag {tag}");
    }
    // Messages to oneself work too.
    comms[1].send(&[9.0], 1, 0).unwrap();
    let mut one = [0.0];
    comms[1].recv(&mut one, 1, 0).unwrap();
    assert_eq!(one, [9.0]);
}

#[test]
fn ping_pong_across_threads() {
    let got = on_ranks(&LocalGroup::new(2, LONG), |c| {
        let mut x = [0.0f32; 3];
        for i in 0..50u64 {
            if c.rank() == 0 {
                c.send(&[i as f32; 3], 1, i).unwrap();
                c.recv(&mut x, 1, i).unwrap();
            } else {
                c.recv(&mut x, 0, i).unwrap();
                x.iter_mut().for_each(|v| *v *= 2.0);
                c.send(&x, 0, i).unwrap();
            }
        }
        x
    });
    assert_eq!(got, [[98.0; 3], [98.0; 3]]);
}

#[test]
fn has_message_probes_without_taking_or_waiting() {
    let comms = LocalGroup::new(2, LONG);
    assert!(!comms[1].has_message(0, 7).unwrap());
    comms[0].send(&[1.0, 2.0], 1, 7).unwrap();
    assert!(comms[1].has_message(0, 7).unwrap());
    assert!(!comms[1].has_message(0, 8).unwrap(), "another tag");
    assert!(!comms[0].has_message(1, 7).unwrap(), "the other direction");
    let mut buf = [0.0; 2];
    comms[1].recv(&mut buf, 0, 7).unwrap();
    assert_eq!(buf, [1.0, 2.0]);
    assert!(!comms[1].has_message(0, 7).unwrap(), "taken by the recv");
    assert_eq!(
        comms[1].has_message(2, 7).unwrap_err().to_string(),
        "probe for a message from group rank 2 (tag 7) on group [0,1]: the group has 2 ranks"
    );
    comms[0].abort("bad batch");
    assert_eq!(
        comms[1].has_message(0, 7).unwrap_err().to_string(),
        "probe for a message from rank 0 (tag 7) on group [0,1]: the group failed earlier: \
         rank 0 failed: bad batch"
    );
}

#[test]
fn meet_exchanges_tokens_and_reports_as_the_collective() {
    use crate::collectives::CollectiveKind;
    let group = LocalGroup::new(2, Duration::from_secs(5));
    let tokens = std::thread::scope(|s| {
        let hs: Vec<_> = group
            .iter()
            .enumerate()
            .map(|(r, c)| {
                // Bit patterns that are NaNs as f32 must come back exact.
                let mine = [u64::MAX - r as u64, 0x7fc0_0001_0000_0000 + r as u64];
                s.spawn(move || c.meet(CollectiveKind::AllReduce, 64, Some(ReduceOp::Sum), &mine))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect::<Vec<_>>()
    });
    let want = vec![
        u64::MAX,
        0x7fc0_0001_0000_0000,
        u64::MAX - 1,
        0x7fc0_0001_0000_0001,
    ];
    assert_eq!(tokens, vec![want.clone(), want]);
    // A rank that never comes is named as for the real all-reduce.
    let group = LocalGroup::new(2, Duration::from_millis(50));
    let err = group[0]
        .meet(CollectiveKind::AllReduce, 64, Some(ReduceOp::Sum), &[1])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("all_reduce #1 (64 f32) on group [0,1] timed out after"),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("ranks [1] did not arrive"),
        "{err}"
    );
}
