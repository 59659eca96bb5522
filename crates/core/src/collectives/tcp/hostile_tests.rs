//! The store and the mesh under broken and hostile peers: every wait ends with an error naming
//! what it waited for, and a stranger without the token costs neither a thread nor the memory it
//! announces. Loopback only; `guarded` turns a hang into a failure instead of a stuck test.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use super::{Rendezvous, StoreClient, StoreLimits, StoreServer, TcpCommunicator};
use crate::error::Result;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SHORT: Duration = Duration::from_millis(300);
/// Far longer than any deadline under test: reaching it means the code under test hung.
const HANG: Duration = Duration::from_secs(30);

/// `f`'s result, or a test failure when it has not returned within `HANG`.
fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG)
        .expect("hung: the wait under test has no deadline")
}

/// A port that completes TCP's handshake (the kernel's backlog) but never answers: a frozen
/// rank 0, or a foreign listener.
fn silent_listener() -> TcpListener {
    TcpListener::bind(SocketAddr::new(LOOPBACK, 0)).unwrap()
}

fn store_with(limits: StoreLimits) -> StoreServer {
    StoreServer::bind_with(SocketAddr::new(LOOPBACK, 0), "secret", limits).unwrap()
}

/// True when the server closed `s` (end of stream or reset) before `HANG`.
fn closed_by_server(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Threads of this process named like the store's per-client threads.
fn store_client_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|n| n.starts_with("weft-store-cli"))
        })
        .count()
}

#[test]
fn a_store_that_accepts_and_never_answers_fails_the_connect_naming_it() {
    let listener = silent_listener();
    let addr = listener.local_addr().unwrap();
    let err = guarded(move || StoreClient::connect(addr, "t", SHORT, "rank 1").err());
    drop(listener);
    let err = err.expect("connected to a store that never answered");
    assert_eq!(err.code(), "WEFT_COLLECTIVE");
    assert_eq!(
        err.to_string(),
        format!(
            "store at {addr}: rank 1: no answer to the handshake within 300ms (is the peer \
             frozen, or not weft?)"
        )
    );
}

/// A store that takes the token, then freezes: every request ends at its deadline.
#[test]
fn a_store_that_stops_answering_fails_each_request_naming_it() {
    let listener = silent_listener();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            let mut s = s;
            let _ = super::wire::check_offer(&mut s, b"weft-store-1", "t");
            held.push(s);
        }
    });
    let client = StoreClient::connect(addr, "t", SHORT, "rank 1").unwrap();
    let (set, get) = guarded(move || {
        let set = client.set("k", b"v").unwrap_err().to_string();
        let get = client.get("k", SHORT).unwrap_err().to_string();
        (set, get)
    });
    assert_eq!(
        set,
        format!("store at {addr}: rank 1: set 'k': no reply within 300ms (is rank 0 frozen?)")
    );
    assert_eq!(
        get,
        format!("store at {addr}: rank 1: get 'k': no reply within 600ms (is rank 0 frozen?)")
    );
}

/// A peer's published address is a listener that never answers (a frozen rank).
#[test]
fn a_mesh_peer_that_never_answers_fails_the_connect_naming_both_ranks() {
    let server = store_with(StoreLimits::default());
    let silent = silent_listener();
    let peer = silent.local_addr().unwrap();
    let store_addr = server.addr();
    let err: Result<TcpCommunicator> = guarded(move || {
        let client = StoreClient::connect(store_addr, "secret", SHORT, "rank 1").unwrap();
        client.set("g/0", peer.to_string().as_bytes()).unwrap();
        let rv = Rendezvous {
            store: &client,
            name: "g",
            host: LOOPBACK,
            token: "secret",
            timeout: SHORT,
        };
        TcpCommunicator::connect(&rv, &[0, 1], 1)
    });
    drop(silent);
    assert_eq!(
        err.unwrap_err().to_string(),
        format!(
            "connecting group [0,1]: rank 1: handshake with rank 0 at {peer}: no answer to the \
             handshake within 300ms (is the peer frozen, or not weft?)"
        )
    );
}

/// The 1 GiB announcement of the issue: closed at once, nothing allocated for it.
#[test]
fn a_huge_length_before_the_token_is_closed_at_once() {
    let server = store_with(StoreLimits::default());
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(&(1u64 << 30).to_le_bytes()).unwrap();
    assert!(guarded(move || closed_by_server(s)));
    // The store still serves its job.
    let client = StoreClient::connect(server.addr(), "secret", HANG, "rank 0").unwrap();
    client.set("k", b"v").unwrap();
    assert_eq!(client.get("k", SHORT).unwrap(), b"v");
}

#[test]
fn junk_bytes_and_a_wrong_token_leave_the_store_intact() {
    let server = store_with(StoreLimits::default());
    let client = StoreClient::connect(server.addr(), "secret", HANG, "rank 0").unwrap();
    client.set("k", b"before").unwrap();
    let mut junk = TcpStream::connect(server.addr()).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(guarded(move || closed_by_server(junk)));
    let err = StoreClient::connect(server.addr(), "guess", HANG, "stranger")
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .ends_with("refused: WEFT_STORE_TOKEN does not match this job's token")
    );
    assert_eq!(client.get("k", SHORT).unwrap(), b"before");
    assert_eq!(client.list("").unwrap(), vec!["k".to_string()]);
}

#[test]
fn a_connection_silent_past_the_handshake_deadline_is_closed() {
    let server = store_with(StoreLimits {
        handshake: Duration::from_millis(200),
        ..StoreLimits::default()
    });
    let s = TcpStream::connect(server.addr()).unwrap();
    assert!(guarded(move || closed_by_server(s)));
    assert_eq!(server.connections(), (0, 0));
}

/// Hundreds of idle strangers: no thread each, at most `pending` held, and the job still joins.
#[test]
fn many_idle_connections_cost_no_threads_and_leave_room_for_the_job() {
    let limits = StoreLimits {
        pending: 16,
        ..StoreLimits::default()
    };
    let server = store_with(limits);
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    // Let the accept loop take them all in (it drops the oldest beyond `pending`).
    let addr = server.addr();
    let client = guarded(move || StoreClient::connect(addr, "secret", HANG, "rank 0").unwrap());
    let (pending, serving) = server.connections();
    assert!(pending <= limits.pending, "{pending} pending");
    assert_eq!(serving, 1, "only the authenticated client has a thread");
    assert!(
        store_client_threads() < 100,
        "{} store threads for 300 idle sockets",
        store_client_threads()
    );
    client.set("k", b"v").unwrap();
    assert_eq!(client.get("k", SHORT).unwrap(), b"v");
    drop(idle);
}

/// After the token, keys and values are bounded by the configured maximum.
#[test]
fn a_value_over_the_configured_maximum_is_refused() {
    let server = store_with(StoreLimits {
        max_value: 1024,
        ..StoreLimits::default()
    });
    let client = StoreClient::connect(server.addr(), "secret", HANG, "rank 0").unwrap();
    let err = client.set("big", &[0u8; 4096]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "store at {}: rank 0: set 'big': the connection failed",
            server.addr()
        )),
        "{err}"
    );
    client.set("small", &[0u8; 1024]).unwrap();
    assert_eq!(client.list("").unwrap(), vec!["small".to_string()]);
}
