//! The rendezvous key-value store: rank 0 hosts a `StoreServer`; every rank (rank 0 too) talks
//! to it through a `StoreClient`. Ranks publish what the others need to find them (each
//! communicator's listen address; later the NCCL unique id) and wait for each other's keys.
//!
//! One thread per client connection; a blocking `get`/`wait` blocks only its own connection's
//! thread, on a condition variable (nobody spins). Values are bytes; `add` keeps a decimal
//! counter, as torch's store does, so `get` of a counter reads as text.
//!
//! Every connection starts with a handshake carrying the shared-secret token
//! (`WEFT_STORE_TOKEN`); a mismatch is refused with a message saying so.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::wire::{
    check_offer, connect_retrying, get_bytes, get_i64, get_string, get_u8, get_u64, offer,
    put_bytes, put_i64, put_u8, put_u64,
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
struct Table {
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

/// The store's host side. Dropping it stops accepting new clients.
pub struct StoreServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl StoreServer {
    /// Listen on `addr` (port 0 picks a free port; see `addr()`), accepting clients that present
    /// `token`.
    pub fn bind(addr: SocketAddr, token: &str) -> Result<StoreServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| collective_error(format!("store: cannot listen on {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| collective_error(format!("store: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let table = Arc::new(Table::default());
        let (token, flag) = (token.to_string(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("weft-store".into())
            .spawn(move || accept_loop(listener, table, token, flag))
            .map_err(|e| collective_error(format!("store: cannot start its thread: {e}")))?;
        Ok(StoreServer { addr, stop })
    }

    /// Where the store listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn accept_loop(listener: TcpListener, table: Arc<Table>, token: String, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let (table, token) = (Arc::clone(&table), token.clone());
        let _ = std::thread::Builder::new()
            .name("weft-store-client".into())
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                if check_offer(&mut stream, MAGIC, &token).is_ok() {
                    let _ = serve(stream, &table);
                }
            });
    }
}

/// Answer one client's requests until it disconnects.
fn serve(stream: TcpStream, table: &Table) -> io::Result<()> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = BufWriter::new(stream);
    loop {
        let op = match get_u8(&mut r) {
            Ok(op) => op,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match Req::from_u8(op) {
            Some(req) => answer(req, &mut r, &mut w, table)?,
            None => {
                put_u8(&mut w, BAD)?;
                put_bytes(&mut w, format!("unknown store request {op}").as_bytes())?;
            }
        }
        w.flush()?;
    }
}

fn answer(req: Req, r: &mut impl io::Read, w: &mut impl Write, table: &Table) -> io::Result<()> {
    match req {
        Req::Set => {
            let (key, value) = (get_string(r)?, get_bytes(r)?);
            table.lock().insert(key, value);
            table.changed.notify_all();
            put_u8(w, OK)
        }
        Req::Get => {
            let (key, ms) = (get_string(r)?, get_u64(r)?);
            let missing = table.wait_for(std::slice::from_ref(&key), Duration::from_millis(ms));
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
            let n = get_u64(r)?.min(1 << 20);
            let keys = (0..n)
                .map(|_| get_string(r))
                .collect::<io::Result<Vec<_>>>()?;
            let ms = get_u64(r)?;
            let missing = table.wait_for(&keys, Duration::from_millis(ms));
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
    idle: Mutex<Vec<Conn>>,
    local: SocketAddr,
}

impl StoreClient {
    /// Connect to the store at `addr` and present `token`, retrying until `timeout` while the
    /// store is not up yet (rank 0 may start after the others).
    pub fn connect(addr: SocketAddr, token: &str, timeout: Duration) -> Result<StoreClient> {
        let (conn, local) = open(addr, token, timeout)?;
        Ok(StoreClient {
            addr,
            token: token.to_string(),
            timeout,
            idle: Mutex::new(vec![conn]),
            local,
        })
    }

    /// The local end of the first connection: the address peers can reach this host by.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// One request and its status byte; `write` sends the request's fields.
    fn request<T>(
        &self,
        what: &str,
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
            None => open(self.addr, &self.token, self.timeout)?.0,
        };
        let (r, w) = &mut conn;
        let out = write(w).and_then(|_| w.flush()).and_then(|_| {
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
            Err(e) => Err(collective_error(format!(
                "store at {}: {what}: the connection failed: {e} (did rank 0 exit?)",
                self.addr
            ))),
        }
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.request(
            &format!("set '{key}'"),
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
            |w| {
                put_u8(w, Req::Delete as u8)?;
                put_bytes(w, prefix.as_bytes())
            },
            |_, r| Ok(Ok(get_u64(r)? as usize)),
        )
    }
}

/// A new connection to the store, past the token handshake, and its local address.
fn open(addr: SocketAddr, token: &str, timeout: Duration) -> Result<(Conn, SocketAddr)> {
    let mut stream = connect_retrying(addr, timeout).map_err(|e| {
        collective_error(format!(
            "store at {addr}: cannot connect within {timeout:?}: {e} (is rank 0 running, and \
             are MASTER_ADDR/MASTER_PORT the same on every rank?)"
        ))
    })?;
    offer(&mut stream, MAGIC, token)
        .map_err(|why| collective_error(format!("store at {addr} refused this process: {why}")))?;
    let io = |e: io::Error| collective_error(format!("store at {addr}: {e}"));
    let local = stream.local_addr().map_err(io)?;
    let reader = stream.try_clone().map_err(io)?;
    Ok(((BufReader::new(reader), BufWriter::new(stream)), local))
}
