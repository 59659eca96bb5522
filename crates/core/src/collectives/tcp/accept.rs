//! The store's accept loop: strangers are held without a thread until they authenticate.
//!
//! One thread polls the non-blocking listener and every connection still in its handshake,
//! reading at most `MAX_OFFER` bytes from each. A connection is closed when its offer is malformed
//! or over the field limit, when it is older than the handshake deadline, or when a newer one
//! needs its place (`StoreLimits::pending`). Only an accepted offer starts a thread (`serve`),
//! and at most `StoreLimits::clients` at once. So whatever a peer without the token does, it
//! costs the store a socket and a few hundred bytes for a bounded time.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::store::StoreLimits;
use super::wire::{MAX_OFFER, answer_offer, parse_offer, refusal, set_timeouts};

/// How long the loop sleeps when nothing happened (also how soon it sees `stop`).
const PAUSE: Duration = Duration::from_millis(5);

/// The connections the loop holds: in their handshake, and authenticated ones being served.
#[derive(Default)]
pub(super) struct Admitted {
    pending: AtomicUsize,
    serving: AtomicUsize,
}

impl Admitted {
    pub(super) fn counts(&self) -> (usize, usize) {
        (
            self.pending.load(Ordering::SeqCst),
            self.serving.load(Ordering::SeqCst),
        )
    }
}

/// A connection that has not presented its token yet.
struct Pending {
    stream: TcpStream,
    got: Vec<u8>,
    since: Instant,
}

/// What one poll of a pending connection found.
enum Step {
    Waiting,
    Offered(Vec<u8>, Vec<u8>),
    Closed,
}

/// Accept and authenticate clients until `stop`; `serve` runs on its own thread for each
/// accepted one.
pub(super) fn accept_loop(
    listener: TcpListener,
    magic: &'static [u8],
    token: &str,
    limits: StoreLimits,
    stop: &AtomicBool,
    admitted: &Arc<Admitted>,
    serve: impl Fn(TcpStream) + Clone + Send + 'static,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        let mut busy = false;
        while let Ok((stream, _)) = listener.accept() {
            busy = true;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if pending.len() >= limits.pending {
                pending.pop_front();
            }
            pending.push_back(Pending {
                stream,
                got: Vec::new(),
                since: Instant::now(),
            });
        }
        let mut still = VecDeque::with_capacity(pending.len());
        for mut p in pending.drain(..) {
            match poll(&mut p) {
                Step::Waiting if p.since.elapsed() < limits.handshake => still.push_back(p),
                Step::Waiting | Step::Closed => busy = true,
                Step::Offered(got_magic, got_token) => {
                    busy = true;
                    let why = refusal(&got_magic, &got_token, magic, token);
                    admit(p.stream, why, &limits, admitted, serve.clone());
                }
            }
        }
        pending = still;
        admitted.pending.store(pending.len(), Ordering::SeqCst);
        if !busy {
            std::thread::sleep(PAUSE);
        }
    }
}

/// Read what a pending connection has sent (never past a whole offer) and parse it.
fn poll(p: &mut Pending) -> Step {
    let mut buf = [0u8; MAX_OFFER];
    let room = MAX_OFFER - p.got.len();
    match p.stream.read(&mut buf[..room]) {
        Ok(0) => return Step::Closed,
        Ok(n) => p.got.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(_) => return Step::Closed,
    }
    match parse_offer(&p.got) {
        Ok(Some((m, t))) => Step::Offered(m, t),
        // A full buffer always parses (`MAX_OFFER` holds two maximal fields).
        Ok(None) => Step::Waiting,
        Err(_) => Step::Closed,
    }
}

/// Answer an offer; an accepted one gets a thread running `serve` while there is room.
fn admit(
    mut stream: TcpStream,
    why: Option<String>,
    limits: &StoreLimits,
    admitted: &Arc<Admitted>,
    serve: impl FnOnce(TcpStream) + Send + 'static,
) {
    let full = admitted.serving.load(Ordering::SeqCst) >= limits.clients;
    let why = why.or_else(|| {
        full.then(|| {
            format!(
                "the store serves {} connections already (its limit)",
                limits.clients
            )
        })
    });
    // The verdict is a few bytes; a short deadline keeps a client that does not read from
    // stalling the loop.
    let ready = stream.set_nonblocking(false).is_ok()
        && set_timeouts(&stream, Some(Duration::from_millis(500))).is_ok();
    // Counted before the verdict, so a client that has its answer sees itself counted.
    let accepted = why.is_none();
    if accepted {
        admitted.serving.fetch_add(1, Ordering::SeqCst);
    }
    if !ready || answer_offer(&mut stream, why).is_err() {
        if accepted {
            admitted.serving.fetch_sub(1, Ordering::SeqCst);
        }
        return;
    }
    let counts = Arc::clone(admitted);
    let started = std::thread::Builder::new()
        .name("weft-store-client".into())
        .spawn(move || {
            serve(stream);
            counts.serving.fetch_sub(1, Ordering::SeqCst);
        });
    if started.is_err() {
        admitted.serving.fetch_sub(1, Ordering::SeqCst);
    }
}
