//! The TCP engine against the in-process one: threads stand in for processes, every group meets
//! through a real store on loopback with ephemeral ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Rendezvous, StoreClient, StoreServer, TcpCommunicator};
use crate::collectives::{Communicator, LocalGroup, ReduceOp};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn store(token: &str) -> StoreServer {
    StoreServer::bind(SocketAddr::new(LOOPBACK, 0), token).unwrap()
}

/// A TCP group of `n` ranks, connected concurrently (as separate processes would).
fn tcp_group(n: usize, timeout: Duration) -> (StoreServer, Vec<TcpCommunicator>) {
    let server = store("t");
    let addr = server.addr();
    let comms = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                s.spawn(move || {
                    let client = StoreClient::connect(addr, "t", timeout, "test").unwrap();
                    let rv = Rendezvous {
                        store: &client,
                        name: "g",
                        host: LOOPBACK,
                        token: "t",
                        timeout,
                    };
                    let ranks: Vec<usize> = (0..n).collect();
                    TcpCommunicator::connect(&rv, &ranks, rank).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (server, comms)
}

/// Run `f` on every rank's communicator, each on its own thread; results in rank order.
fn on_ranks<C: Communicator, T: Send>(comms: &[C], f: impl Fn(&C) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Values whose sums depend on the order of the additions (mixed magnitudes).
fn input(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = ((rank * 7919 + i * 104_729) % 1000) as f32 / 7.0;
            if i % 3 == rank % 3 { x * 1e7 } else { -x / 3.0 }
        })
        .collect()
}

/// Every collective of the trait on one communicator, outputs concatenated.
fn every_collective<C: Communicator>(c: &C) -> Vec<Vec<f32>> {
    let (r, n) = (c.rank(), c.size());
    let mut out = Vec::new();
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        let mut buf = input(r, 12);
        c.all_reduce(&mut buf, op).unwrap();
        out.push(buf);
        let mut rs = vec![0.0; 4];
        c.reduce_scatter(&input(r, 4 * n), &mut rs, op).unwrap();
        out.push(rs);
        let mut red = input(r, 5);
        c.reduce(&mut red, 1, op).unwrap();
        out.push(red);
    }
    let mut ag = vec![0.0; 3 * n];
    c.all_gather(&input(r, 3), &mut ag).unwrap();
    out.push(ag);
    let mut bc = input(r, 6);
    c.broadcast(&mut bc, 2).unwrap();
    out.push(bc);
    let mut a2a = vec![0.0; 2 * n];
    c.all_to_all(&input(r, 2 * n), &mut a2a).unwrap();
    out.push(a2a);
    c.barrier().unwrap();
    let next = (r + 1) % n;
    c.send(&input(r, 3), next, 7).unwrap();
    c.send(&[r as f32], next, 7).unwrap();
    let mut got = vec![0.0; 3];
    c.recv(&mut got, (r + n - 1) % n, 7).unwrap();
    let mut second = vec![0.0; 1];
    c.recv(&mut second, (r + n - 1) % n, 7).unwrap();
    out.push(got);
    out.push(second);
    out
}

fn bits(v: &[Vec<Vec<f32>>]) -> Vec<Vec<Vec<u32>>> {
    v.iter()
        .map(|r| {
            r.iter()
                .map(|b| b.iter().map(|x| x.to_bits()).collect())
                .collect()
        })
        .collect()
}

#[test]
fn every_collective_is_bit_identical_to_the_local_group() {
    let timeout = Duration::from_secs(10);
    let (_server, tcp) = tcp_group(4, timeout);
    let local = LocalGroup::new(4, timeout);
    let a = on_ranks(&tcp, every_collective);
    let b = on_ranks(&local, every_collective);
    assert_eq!(bits(&a), bits(&b));
    // The inputs really do make the order matter: a different order gives different bits.
    let (x, y, z) = (1e8f32, 1.0f32, -1e8f32);
    assert_ne!((x + y) + z, (x + z) + y);
}

#[test]
fn store_operations_and_blocking_get() {
    let server = store("secret");
    let t = Duration::from_secs(5);
    let a = StoreClient::connect(server.addr(), "secret", t, "test").unwrap();
    let b = StoreClient::connect(server.addr(), "secret", t, "test").unwrap();
    a.set("job/x", b"1").unwrap();
    assert_eq!(b.get("job/x", t).unwrap(), b"1");
    assert_eq!(a.add("job/n", 2).unwrap(), 2);
    assert_eq!(b.add("job/n", 3).unwrap(), 5);
    assert_eq!(a.get("job/n", t).unwrap(), b"5");
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let v = b.get("late", Duration::from_secs(5)).unwrap();
        (v, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    a.set("late", b"v").unwrap();
    let (v, waited) = waiter.join().unwrap();
    assert_eq!(v, b"v");
    assert!(
        waited >= Duration::from_millis(90),
        "get returned before the key was set"
    );
    a.wait(&["job/x", "late"], t).unwrap();
    assert_eq!(a.list("job/").unwrap(), vec!["job/n", "job/x"]);
    assert_eq!(a.delete_prefix("job/").unwrap(), 2);
    assert_eq!(a.list("job/").unwrap(), Vec::<String>::new());
}

#[test]
fn a_blocking_get_does_not_hold_up_another_thread_of_the_same_client() {
    let server = store("t");
    let client = StoreClient::connect(server.addr(), "t", Duration::from_secs(5), "test").unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| client.get("k", Duration::from_secs(5)).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        client.set("k", b"v").unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "set waited for the get"
        );
        assert_eq!(waiter.join().unwrap(), b"v");
    });
}

#[test]
fn store_timeouts_and_a_wrong_token_are_named() {
    let server = store("secret");
    let short = Duration::from_millis(100);
    let a = StoreClient::connect(server.addr(), "secret", short, "test").unwrap();
    let err = a.get("missing", short).unwrap_err();
    assert_eq!(
        err.to_string(),
        "store: get 'missing' timed out after 100ms: no rank set it"
    );
    a.set("here", b"").unwrap();
    let err = a.wait(&["here", "absent"], short).unwrap_err();
    assert_eq!(
        err.to_string(),
        "store: wait timed out after 100ms: keys [\"absent\"] were never set"
    );
    let err = StoreClient::connect(server.addr(), "guess", short, "test")
        .err()
        .unwrap();
    assert_eq!(err.code(), "WEFT_COLLECTIVE");
    assert_eq!(
        err.to_string(),
        format!(
            "store at {}: test: refused: WEFT_STORE_TOKEN does not match this job's token",
            server.addr()
        )
    );
}

#[test]
fn a_rank_that_leaves_is_named_at_once() {
    let (_server, mut comms) = tcp_group(3, Duration::from_secs(30));
    drop(comms.remove(1));
    let started = Instant::now();
    let errors = on_ranks(&comms, |c| {
        c.all_reduce(&mut [1.0; 8], ReduceOp::Sum).unwrap_err()
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the timeout"
    );
    // The first rank to notice fails the group; a peer that has not started yet reports it as
    // the group's earlier failure. Either way the message names the collective and rank 1.
    let cause = "all_reduce #1 (8 f32) on group [0,1,2] cannot complete: ranks [1] left the group \
                 without arriving (its connection closed: the process exited or was killed)";
    for e in &errors {
        assert_eq!(e.code(), "WEFT_COLLECTIVE");
        let text = e.to_string();
        let earlier = format!(
            "all_reduce #1 (8 f32) on group [0,1,2] cannot start: the group failed earlier: {cause}"
        );
        assert!(text == cause || text == earlier, "{text}");
    }
    assert!(errors.iter().any(|e| e.to_string() == cause));
}

#[test]
fn a_late_rank_times_out_naming_the_collective_and_the_missing_rank() {
    // Long enough that ranks 0 and 1 both arrive before it runs out even on a loaded machine
    // (at 300 ms it failed once while five builds shared two cores).
    let (_server, comms) = tcp_group(3, Duration::from_millis(1500));
    let errors = on_ranks(&comms[..2], |c| c.barrier().unwrap_err().to_string());
    // Either rank may time out first; the other reports the same failure through its abort.
    assert!(
        errors.contains(
            &"barrier #1 on group [0,1,2] timed out after 1.5s: ranks [2] did not arrive"
                .to_string()
        ),
        "{errors:?}"
    );
    // Rank 2 learns of the failure from the others' abort, before or while it calls.
    let later = comms[2].barrier().unwrap_err().to_string();
    assert!(
        later.ends_with(
            "barrier #1 on group [0,1,2] timed out after 1.5s: ranks [2] did not arrive"
        ),
        "{later}"
    );
}

#[test]
fn mismatched_calls_read_as_the_local_groups() {
    let timeout = Duration::from_secs(10);
    let run = |c: &dyn Communicator| {
        if c.rank() == 0 {
            c.all_reduce(&mut [0.0; 4], ReduceOp::Sum)
                .unwrap_err()
                .to_string()
        } else {
            c.broadcast(&mut [0.0; 4], 0).unwrap_err().to_string()
        }
    };
    let (_server, tcp) = tcp_group(2, timeout);
    let local = LocalGroup::new(2, timeout);
    let a = on_ranks(&tcp, |c| run(c));
    let b = on_ranks(&local, |c| run(c));
    let expected = "collective mismatch at #1 on group [0,1]: rank 0 called all_reduce (sum, 4 f32) \
                    but rank 1 called broadcast (root 0, 4 f32)";
    assert!(a.iter().all(|m| m == expected), "{a:?}");
    assert!(b.iter().all(|m| m == expected), "{b:?}");
}
