//! The rendezvous key-value store: rank 0 hosts a `StoreServer`; every rank (rank 0 too) talks
//! to it through a `StoreClient`. Ranks publish what the others need to find them (each
//! communicator's listen address; later the NCCL unique id) and wait for each other's keys.
//!
//! Authentication comes first: new connections wait in `accept`'s poll loop (no thread, at most
//! `StoreLimits::pending` of them, each dropped after `StoreLimits::handshake`) until they
//! present the shared-secret token (`WEFT_STORE_TOKEN`); only then does a connection get a
//! thread of its own (at most `StoreLimits::clients`), whose keys and values are bounded by
//! `StoreLimits::max_value`. A blocking `get`/`wait` blocks only its own connection's thread, on
//! a condition variable (nobody spins). Values are bytes; `add` keeps a decimal counter, as
//! torch's store does, so `get` of a counter reads as text.
//!
//! Every client request has a deadline: the client's timeout, plus the server-side wait for
//! `get`/`wait`; a store that accepts and never answers is an error naming it.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::accept::{Admitted, accept_loop};
use super::wire::{
    connect_retrying, get_bytes, get_bytes_max, get_i64, get_string, get_string_max, get_u8,
    get_u64, offer, put_bytes, put_i64, put_u8, put_u64, set_timeouts,
};
use crate::collectives::communicator::collective_error;
use crate::error::Result;

const MAGIC: &[u8] = b"weft-store-1";

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Req {
    Set = 1,
    Get = 2,
    Add = 3,
    Wait = 4,
    List = 5,
    Delete = 6,
}

impl Req {
    fn from_u8(v: u8) -> Option<Req> {
        [
            Req::Set,
            Req::Get,
            Req::Add,
            Req::Wait,
            Req::List,
            Req::Delete,
        ]
        .into_iter()
        .find(|r| *r as u8 == v)
    }
}

const OK: u8 = 0;
const TIMED_OUT: u8 = 1;
const BAD: u8 = 2;

#[derive(Default)]
pub(super) struct Table {
    values: Mutex<BTreeMap<String, Vec<u8>>>,
    changed: Condvar,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add to a decimal counter (0 when absent or not a number); returns the new value.
    fn add(&self, key: String, delta: i64) -> i64 {
        let mut map = self.lock();
        let old = map
            .get(&key)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
        let new = old.unwrap_or(0).wrapping_add(delta);
        map.insert(key, new.to_string().into_bytes());
        drop(map);
        self.changed.notify_all();
        new
    }

    /// Wait until every key exists or the deadline passes; returns the missing keys.
    fn wait_for(&self, keys: &[String], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut map = self.lock();
        loop {
            let missing: Vec<String> = keys
                .iter()
                .filter(|k| !map.contains_key(*k))
                .cloned()
                .collect();
            let now = Instant::now();
            if missing.is_empty() || now >= deadline {
                return missing;
            }
            map = self
                .changed
                .wait_timeout(map, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// What the store allows its clients; the defaults suit any job (a job's keys are addresses and
/// ids of a few hundred bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// How long a new connection may take to present its token before it is closed.
    pub handshake: Duration,
    /// Connections still in their handshake; beyond this the oldest is closed for a new one.
    pub pending: usize,
    /// Authenticated connections served at once (each has a thread); more are refused.
    pub clients: usize,
    /// The longest key or value an authenticated client may send, in bytes.
    pub max_value: u64,
    /// The most keys one `wait` may name.
    pub max_keys: u64,
    /// The longest a `get` or `wait` may block the store's side of a connection.
    pub max_wait: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            handshake: Duration::from_secs(10),
            pending: 64,
            clients: 1024,
            max_value: 16 << 20,
            max_keys: 1 << 16,
            max_wait: Duration::from_secs(24 * 3600),
        }
    }
}

/// The store's host side. Dropping it stops accepting new clients.
pub struct StoreServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    admitted: Arc<Admitted>,
}

impl StoreServer {
    /// Listen on `addr` (port 0 picks a free port; see `addr()`), accepting clients that present
    /// `token`, with the default limits.
    pub fn bind(addr: SocketAddr, token: &str) -> Result<StoreServer> {
        StoreServer::bind_with(addr, token, StoreLimits::default())
    }

    /// `bind` with explicit limits.
    pub fn bind_with(addr: SocketAddr, token: &str, limits: StoreLimits) -> Result<StoreServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| collective_error(format!("store: cannot listen on {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| collective_error(format!("store: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| collective_error(format!("store: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(Admitted::default());
        let table = Arc::new(Table::default());
        let token = token.to_string();
        let (flag, counts) = (Arc::clone(&stop), Arc::clone(&admitted));
        let serve_one = move |stream: TcpStream| {
            let _ = serve(stream, &table, &limits);
        };
        std::thread::Builder::new()
            .name("weft-store".into())
            .spawn(move || accept_loop(listener, MAGIC, &token, limits, &flag, &counts, serve_one))
            .map_err(|e| collective_error(format!("store: cannot start its thread: {e}")))?;
        Ok(StoreServer {
            addr,
            stop,
            admitted,
        })
    }

    /// Where the store listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections now waiting in their handshake, and authenticated connections being served
    /// (each the one thread it costs).
    pub fn connections(&self) -> (usize, usize) {
        self.admitted.counts()
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        // The accept loop polls; it sees the flag within one pause.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answer one client's requests until it disconnects.
fn serve(stream: TcpStream, table: &Table, limits: &StoreLimits) -> io::Result<()> {
    // An authenticated client may idle in the pool of its process for as long as it likes.
    set_timeouts(&stream, None)?;
    let r = BufReader::new(stream.try_clone()?);
    serve_on(r, BufWriter::new(stream), table, limits)
}

/// The request loop of `serve` over any byte streams (the fuzz tests feed it bytes).
pub(super) fn serve_on(
    mut r: impl io::Read,
    mut w: impl Write,
    table: &Table,
    limits: &StoreLimits,
) -> io::Result<()> {
    loop {
        let op = match get_u8(&mut r) {
            Ok(op) => op,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match Req::from_u8(op) {
            Some(req) => answer(req, &mut r, &mut w, table, limits)?,
            None => {
                // The rest of the stream cannot be framed: answer, then close it.
                let why = format!("unknown store request {op}");
                put_u8(&mut w, BAD)?;
                put_bytes(&mut w, why.as_bytes())?;
                w.flush()?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
        }
        w.flush()?;
    }
}

fn answer(
    req: Req,
    r: &mut impl io::Read,
    w: &mut impl Write,
    table: &Table,
    limits: &StoreLimits,
) -> io::Result<()> {
    let max = limits.max_value;
    let get_string = |r: &mut _| get_string_max(r, max);
    match req {
        Req::Set => {
            let (key, value) = (get_string(r)?, get_bytes_max(r, max)?);
            table.lock().insert(key, value);
            table.changed.notify_all();
            put_u8(w, OK)
        }
        Req::Get => {
            let (key, ms) = (get_string(r)?, get_u64(r)?);
            let wait = Duration::from_millis(ms).min(limits.max_wait);
            let missing = table.wait_for(std::slice::from_ref(&key), wait);
            match table.lock().get(&key).filter(|_| missing.is_empty()) {
                Some(v) => put_u8(w, OK).and_then(|_| put_bytes(w, v)),
                None => put_u8(w, TIMED_OUT),
            }
        }
        Req::Add => {
            let (key, delta) = (get_string(r)?, get_i64(r)?);
            let new = table.add(key, delta);
            put_u8(w, OK).and_then(|_| put_i64(w, new))
        }
        Req::Wait => {
            let n = get_u64(r)?;
            if n > limits.max_keys {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a wait for {n} keys (the limit is {})", limits.max_keys),
                ));
            }
            let keys = (0..n)
                .map(|_| get_string(r))
                .collect::<io::Result<Vec<_>>>()?;
            let ms = get_u64(r)?;
            let missing = table.wait_for(&keys, Duration::from_millis(ms).min(limits.max_wait));
            if missing.is_empty() {
                return put_u8(w, OK);
            }
            put_u8(w, TIMED_OUT)?;
            put_strings(w, &missing)
        }
        Req::List => {
            let prefix = get_string(r)?;
            let keys: Vec<String> = table
                .lock()
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            put_u8(w, OK)?;
            put_strings(w, &keys)
        }
        Req::Delete => {
            let prefix = get_string(r)?;
            let mut map = table.lock();
            let before = map.len();
            map.retain(|k, _| !k.starts_with(&prefix));
            let removed = before - map.len();
            drop(map);
            put_u8(w, OK).and_then(|_| put_u64(w, removed as u64))
        }
    }
}

fn put_strings(w: &mut impl Write, items: &[String]) -> io::Result<()> {
    put_u64(w, items.len() as u64)?;
    items.iter().try_for_each(|s| put_bytes(w, s.as_bytes()))
}

fn get_strings(r: &mut impl io::Read) -> io::Result<Vec<String>> {
    let n = get_u64(r)?.min(1 << 20);
    (0..n).map(|_| get_string(r)).collect()
}

/// One connection's two buffered halves.
type Conn = (BufReader<TcpStream>, BufWriter<TcpStream>);

/// One process's handle on the store, shared by its threads. Each request takes an idle
/// connection (opening one when none is idle) and returns it afterwards: a blocking `get` on
/// one thread never holds up another thread's `set` (which may be the very key it waits for).
pub struct StoreClient {
    addr: SocketAddr,
    token: String,
    timeout: Duration,
    /// Who this client is in error messages ("rank 2").
    who: String,
    idle: Mutex<Vec<Conn>>,
    local: SocketAddr,
}

impl StoreClient {
    /// Connect to the store at `addr` as `who` and present `token`, retrying until `timeout`
    /// while the store is not up yet (rank 0 may start after the others). The handshake and
    /// every later request are bounded by `timeout` too.
    pub fn connect(
        addr: SocketAddr,
        token: &str,
        timeout: Duration,
        who: &str,
    ) -> Result<StoreClient> {
        let (conn, local) = open(addr, token, timeout, who)?;
        Ok(StoreClient {
            addr,
            token: token.to_string(),
            timeout,
            who: who.to_string(),
            idle: Mutex::new(vec![conn]),
            local,
        })
    }

    /// The local end of the first connection: the address peers can reach this host by.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// One request and its status byte; `write` sends the request's fields. The reply must
    /// come within the client's timeout plus `server_wait` (how long the store itself may wait
    /// before answering a `get` or `wait`).
    fn request<T>(
        &self,
        what: &str,
        server_wait: Duration,
        write: impl FnOnce(&mut BufWriter<TcpStream>) -> io::Result<()>,
        read: impl FnOnce(u8, &mut BufReader<TcpStream>) -> io::Result<Result<T>>,
    ) -> Result<T> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(c) => c,
            None => open(self.addr, &self.token, self.timeout, &self.who)?.0,
        };
        let deadline = self.timeout.saturating_add(server_wait);
        let (r, w) = &mut conn;
        let out = set_timeouts(r.get_ref(), Some(deadline))
            .and_then(|_| write(w))
            .and_then(|_| w.flush())
            .and_then(|_| {
                let status = get_u8(r)?;
                if status == BAD {
                    let why = get_string(r)?;
                    return Ok(Err(collective_error(format!("store: {what}: {why}"))));
                }
                read(status, r)
            });
        match out {
            Ok(result) => {
                // A complete exchange leaves the connection clean for the next request.
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn);
                result
            }
            Err(e) if timed_out(&e) => Err(collective_error(format!(
                "store at {}: {}: {what}: no reply within {deadline:?} (is rank 0 frozen?)",
                self.addr, self.who
            ))),
            Err(e) => Err(collective_error(format!(
                "store at {}: {}: {what}: the connection failed: {e} (did rank 0 exit?)",
                self.addr, self.who
            ))),
        }
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.request(
            &format!("set '{key}'"),
            Duration::ZERO,
            |w| {
                put_u8(w, Req::Set as u8)?;
                put_bytes(w, key.as_bytes())?;
                put_bytes(w, value)
            },
            |_, _| Ok(Ok(())),
        )
    }

    /// The value of `key`, waiting up to `timeout` for some rank to set it.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>> {
        self.request(
            &format!("get '{key}'"),
            timeout,
            |w| {
                put_u8(w, Req::Get as u8)?;
                put_bytes(w, key.as_bytes())?;
                put_u64(w, timeout.as_millis() as u64)
            },
            |status, r| {
                if status == OK {
                    return Ok(Ok(get_bytes(r)?));
                }
                Ok(Err(collective_error(format!(
                    "store: get '{key}' timed out after {timeout:?}: no rank set it"
                ))))
            },
        )
    }

    /// Add `delta` to the counter `key` (0 when absent) atomically; returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        self.request(
            &format!("add '{key}'"),
            Duration::ZERO,
            |w| {
                put_u8(w, Req::Add as u8)?;
                put_bytes(w, key.as_bytes())?;
                put_i64(w, delta)
            },
            |_, r| Ok(Ok(get_i64(r)?)),
        )
    }

    /// Wait until every key exists; a timeout names the keys still missing.
    pub fn wait(&self, keys: &[&str], timeout: Duration) -> Result<()> {
        self.request(
            "wait",
            timeout,
            |w| {
                put_u8(w, Req::Wait as u8)?;
                put_u64(w, keys.len() as u64)?;
                keys.iter().try_for_each(|k| put_bytes(w, k.as_bytes()))?;
                put_u64(w, timeout.as_millis() as u64)
            },
            |status, r| {
                if status == OK {
                    return Ok(Ok(()));
                }
                let missing = get_strings(r)?;
                Ok(Err(collective_error(format!(
                    "store: wait timed out after {timeout:?}: keys {missing:?} were never set"
                ))))
            },
        )
    }

    /// Every key that starts with `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.request(
            &format!("list '{prefix}'"),
            Duration::ZERO,
            |w| {
                put_u8(w, Req::List as u8)?;
                put_bytes(w, prefix.as_bytes())
            },
            |_, r| Ok(Ok(get_strings(r)?)),
        )
    }

    /// Delete every key that starts with `prefix`; returns how many there were.
    pub fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        self.request(
            &format!("delete '{prefix}'"),
            Duration::ZERO,
            |w| {
                put_u8(w, Req::Delete as u8)?;
                put_bytes(w, prefix.as_bytes())
            },
            |_, r| Ok(Ok(get_u64(r)? as usize)),
        )
    }
}

/// A read or write that ran past its timeout (the OS reports either kind).
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A new connection to the store, past the token handshake, and its local address.
fn open(addr: SocketAddr, token: &str, timeout: Duration, who: &str) -> Result<(Conn, SocketAddr)> {
    let mut stream = connect_retrying(addr, timeout).map_err(|e| {
        collective_error(format!(
            "store at {addr}: {who}: cannot connect within {timeout:?}: {e} (is rank 0 running, \
             and are MASTER_ADDR/MASTER_PORT the same on every rank?)"
        ))
    })?;
    offer(&mut stream, MAGIC, token, timeout)
        .map_err(|why| collective_error(format!("store at {addr}: {who}: {why}")))?;
    let io = |e: io::Error| collective_error(format!("store at {addr}: {who}: {e}"));
    let local = stream.local_addr().map_err(io)?;
    let reader = stream.try_clone().map_err(io)?;
    Ok(((BufReader::new(reader), BufWriter::new(stream)), local))
}
