//! Failure tests of the in-process engine: timeouts, mismatches, bad buffers, dropped ranks
//! and point-to-point errors, each checked by its exact message and by not hanging.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use super::local_tests::{LONG, SHORT, message, on_ranks};
use super::{Communicator, LocalCommunicator, LocalGroup, ReduceOp};

#[test]
fn a_missing_rank_times_out_with_a_message_naming_it() {
    let comms = LocalGroup::new(4, SHORT);
    let expected = "all_reduce #3 (1024 f32) on group [0,1,2,3] timed out after 200ms: \
                    ranks [2] did not arrive";
    // The short timeout covers the first two rounds too; lining the threads up first keeps a
    // loaded machine's slow thread start from failing them.
    let line_up = Barrier::new(4);
    let start = Instant::now();
    let got = on_ranks(&comms, |c| {
        let mut buf = vec![1.0; 1024];
        for _ in 0..2 {
            line_up.wait();
            c.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
        }
        // Rank 2 skips the third all_reduce; its handle stays alive, so only the timeout helps.
        (c.rank() != 2).then(|| message(c.all_reduce(&mut buf, ReduceOp::Sum).unwrap_err()))
    });
    let elapsed = start.elapsed();
    assert_eq!(
        got,
        [
            Some(expected.into()),
            Some(expected.into()),
            None,
            Some(expected.into())
        ]
    );
    assert!(
        elapsed >= SHORT && elapsed < Duration::from_secs(5),
        "took {elapsed:?}"
    );
    // The latecomer and any later call fail at once, carrying the original diagnosis.
    let late = comms[2]
        .all_reduce(&mut [0.0; 1024], ReduceOp::Sum)
        .unwrap_err();
    assert_eq!(
        message(late),
        format!(
            "all_reduce #3 (1024 f32) on group [0,1,2,3] cannot start: \
             the group failed earlier: {expected}"
        )
    );
    let next = comms[0].barrier().unwrap_err();
    assert_eq!(
        message(next),
        format!("barrier #4 on group [0,1,2,3] cannot start: the group failed earlier: {expected}")
    );
}

#[test]
fn timeouts_in_subgroups_name_global_ranks() {
    let groups = LocalGroup::subgroups(4, &[vec![0, 2], vec![1, 3]], SHORT).unwrap();
    let err = groups[1][0].barrier().unwrap_err();
    assert_eq!(err.code(), "WEFT_COLLECTIVE");
    assert_eq!(
        err.to_string(),
        "barrier #1 on group [1,3] timed out after 200ms: ranks [3] did not arrive"
    );
    // The other subgroup is unaffected.
    let line_up = Barrier::new(2);
    on_ranks(&groups[0], |c| {
        line_up.wait();
        c.barrier().unwrap()
    });
    // Several missing ranks are all named.
    let comms = LocalGroup::new(4, SHORT);
    let err = comms[1].broadcast(&mut [0.0; 3], 0).unwrap_err();
    assert_eq!(
        message(err),
        "broadcast #1 (3 f32) on group [0,1,2,3] timed out after 200ms: \
         ranks [0,2,3] did not arrive"
    );
}

#[test]
fn a_dropped_rank_fails_its_peers_at_once() {
    let mut comms = LocalGroup::new(3, LONG);
    drop(comms.pop());
    let start = Instant::now();
    let got = on_ranks(&comms, |c| {
        message(c.all_reduce(&mut [1.0; 4], ReduceOp::Sum).unwrap_err())
    });
    let expected = "all_reduce #1 (4 f32) on group [0,1,2] cannot complete: ranks [2] left the \
                    group (their communicators were dropped) without arriving";
    // The first to arrive fails on the spot; the second may find the group already failed.
    assert!(got.iter().all(|m| m.ends_with(expected)), "{got:?}");
    assert!(got.iter().any(|m| m == expected), "{got:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn mismatched_collectives_are_reported_naming_both() {
    let start = Instant::now();
    let got = on_ranks(&LocalGroup::new(2, LONG), |c| {
        let mut buf = [0.0; 4];
        c.barrier().unwrap();
        let result = match c.rank() {
            0 => c.all_reduce(&mut buf, ReduceOp::Sum),
            _ => c.broadcast(&mut buf, 0),
        };
        message(result.unwrap_err())
    });
    let expected = "collective mismatch at #2 on group [0,1]: \
                    rank 0 called all_reduce (sum, 4 f32) \
                    but rank 1 called broadcast (root 0, 4 f32)";
    assert_eq!(got, [expected, expected]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a mismatch must not wait for the timeout"
    );
    // Same collective, different operator or root.
    let got = on_ranks(&LocalGroup::new(2, LONG), |c| {
        let op = [ReduceOp::Sum, ReduceOp::Mean][c.rank()];
        message(c.all_reduce(&mut [0.0; 4], op).unwrap_err())
    });
    let expected = "collective mismatch at #1 on group [0,1]: \
                    rank 0 called all_reduce (sum, 4 f32) \
                    but rank 1 called all_reduce (mean, 4 f32)";
    assert_eq!(got, [expected, expected]);
    let got = on_ranks(&LocalGroup::new(2, LONG), |c| {
        message(c.broadcast(&mut [0.0; 2], c.rank()).unwrap_err())
    });
    let expected = "collective mismatch at #1 on group [0,1]: \
                    rank 0 called broadcast (root 0, 2 f32) \
                    but rank 1 called broadcast (root 1, 2 f32)";
    assert_eq!(got, [expected, expected]);
}

#[test]
fn size_mismatches_name_the_ranks_and_sizes() {
    let got = on_ranks(&LocalGroup::new(2, LONG), |c| {
        let mut buf = vec![0.0; 4 + c.rank()];
        message(c.all_reduce(&mut buf, ReduceOp::Sum).unwrap_err())
    });
    let expected =
        "all_reduce #1 on group [0,1]: element counts differ: rank 0 has 4 f32, rank 1 has 5 f32";
    assert_eq!(got, [expected, expected]);
}

#[test]
fn a_bad_buffer_fails_the_caller_and_its_peers_fast() {
    let start = Instant::now();
    let got = on_ranks(&LocalGroup::new(2, LONG), |c| {
        let mut out = vec![0.0; 8 - c.rank()];
        if c.rank() == 1 {
            thread::sleep(Duration::from_millis(50));
        }
        message(c.all_gather(&[1.0; 4], &mut out).unwrap_err())
    });
    let expected = "all_gather #1 (4 f32) on group [0,1] on rank 1: \
                    output has 7 f32 but all_gather of 4 f32 on 2 ranks needs 8";
    assert_eq!(got[1], expected);
    // Rank 0 was waiting (or, on a slow machine, arrived late): either way it names rank 1's fault.
    assert!(got[0].ends_with(expected), "{}", got[0]);
    assert!(start.elapsed() < Duration::from_secs(5));
    let comms = LocalGroup::new(2, LONG);
    let err = comms[0].reduce(&mut [0.0], 2, ReduceOp::Sum).unwrap_err();
    assert_eq!(
        message(err),
        "reduce #1 (1 f32) on group [0,1] on rank 0: root 2 is not a rank of this 2-rank group"
    );
}

#[test]
fn recv_failures_name_the_peer_and_the_tag() {
    let comms = LocalGroup::subgroups(4, &[vec![1, 3]], SHORT)
        .unwrap()
        .remove(0);
    comms[1].send(&[1.0], 0, 5).unwrap();
    comms[1].send(&[1.0], 0, 3).unwrap();
    let err = comms[0].recv(&mut [0.0; 2], 1, 7).unwrap_err();
    assert_eq!(
        message(err),
        "recv from rank 3 (tag 7, 2 f32) on group [1,3] timed out after 200ms: rank 3 sent \
         nothing with tag 7 (its unreceived messages here have tags [3,5])"
    );
    let err = comms[0].recv(&mut [0.0; 2], 1, 5).unwrap_err();
    assert_eq!(
        message(err),
        "recv from rank 3 (tag 5, 2 f32) on group [1,3]: \
         the message has 1 f32 but the buffer has 2 f32"
    );
    let err = comms[0].send(&[0.0], 2, 0).unwrap_err();
    assert_eq!(
        message(err),
        "send to group rank 2 (tag 0) on group [1,3]: the group has 2 ranks"
    );
    let err = comms[1].recv(&mut [0.0], 0, 1).unwrap_err();
    assert_eq!(
        message(err),
        "recv from rank 1 (tag 1, 1 f32) on group [1,3] timed out after 200ms: \
         rank 1 sent nothing with tag 1"
    );
}

#[test]
fn recv_from_a_dropped_rank_fails_at_once() {
    let mut comms = LocalGroup::new(2, LONG);
    comms[0].send(&[5.0], 1, 1).unwrap();
    let sender = comms.remove(0);
    drop(sender);
    let mut buf = [0.0];
    // What was sent before leaving is still delivered.
    comms[0].recv(&mut buf, 0, 1).unwrap();
    assert_eq!(buf, [5.0]);
    let start = Instant::now();
    let err = comms[0].recv(&mut buf, 0, 1).unwrap_err();
    assert_eq!(
        message(err),
        "recv from rank 0 (tag 1, 1 f32) on group [0,1] cannot complete: rank 0 left the group \
         without sending it"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn group_construction_errors() {
    let msg = |r: crate::error::Result<Vec<LocalCommunicator>>| message(r.unwrap_err());
    assert_eq!(
        msg(LocalGroup::with_ranks(&[], LONG)),
        "a group needs at least one rank"
    );
    assert_eq!(
        msg(LocalGroup::with_ranks(&[1, 0, 1], LONG)),
        "group [1,0,1]: rank 1 appears twice"
    );
    let err = LocalGroup::subgroups(4, &[vec![0, 1], vec![2, 4]], LONG).unwrap_err();
    assert_eq!(
        message(err),
        "subgroups of 4 ranks: group 1 [2,4]: rank 4 is not below the world size"
    );
    assert!(LocalGroup::new(0, LONG).is_empty());
    let comms = LocalGroup::with_ranks(&[5, 2], LONG).unwrap();
    assert_eq!(
        (comms[0].global_rank(), comms[0].rank(), comms[0].size()),
        (5, 0, 2)
    );
    assert_eq!(comms[1].timeout(), LONG);
    assert_eq!(
        format!("{:?}", comms[1]),
        "LocalCommunicator { rank: 1, group: [5, 2] }"
    );
}
