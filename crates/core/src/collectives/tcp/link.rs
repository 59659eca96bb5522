//! The connections of one TCP group: a full mesh (one stream per pair of ranks), set up through
//! the store, and one reader thread per peer that files every arriving frame in the `Inbox`.
//!
//! Setup. Each rank listens on an ephemeral port of its host, publishes `name/rank` = address
//! in the store, connects to every lower rank and accepts every higher one; both sides present
//! the job's token. Frames of one stream arrive in send order, so messages with the same
//! (sender, tag) keep their order.
//!
//! A peer whose stream ends (its process exited or was killed: the kernel closes its sockets)
//! is marked gone with the reason, and every waiter is woken: a killed rank is detected at once,
//! not after the timeout.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::super::communicator::{CollectiveKind, ReduceOp, collective_error};
use super::super::group::{Call, list};
use super::store::StoreClient;
use super::wire::{
    check_offer, connect_retrying, get_f32s, get_string, get_u8, get_u64, offer, put_bytes,
    put_f32s, put_u8, put_u64, set_timeouts,
};
use crate::error::Result;

const MAGIC: &[u8] = b"weft-comm-1";

const KINDS: [CollectiveKind; 7] = [
    CollectiveKind::AllReduce,
    CollectiveKind::AllGather,
    CollectiveKind::ReduceScatter,
    CollectiveKind::Broadcast,
    CollectiveKind::Reduce,
    CollectiveKind::AllToAll,
    CollectiveKind::Barrier,
];
const OPS: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max];
const NONE: u64 = u64::MAX;

/// Where a frame is filed: a collective round or a point-to-point tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Slot {
    Round(u64),
    Tag(u64),
}

/// What travels: one rank's part of a collective round, a point-to-point message, or the
/// news that the sender's group failed (with its message).
pub(super) enum Frame {
    Round {
        seq: u64,
        call: Call,
        data: Vec<f32>,
    },
    Message {
        tag: u64,
        data: Vec<f32>,
    },
    Abort {
        message: String,
    },
}

impl Frame {
    fn write(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Frame::Round { seq, call, data } => {
                put_u8(w, 0)?;
                put_u64(w, *seq)?;
                let kind = KINDS.iter().position(|k| *k == call.kind).unwrap_or(0);
                put_u8(w, kind as u8)?;
                let op = call.op.and_then(|o| OPS.iter().position(|x| *x == o));
                put_u64(w, op.map_or(NONE, |o| o as u64))?;
                put_u64(w, call.root.map_or(NONE, |r| r as u64))?;
                put_u64(w, call.count as u64)?;
                put_f32s(w, data)
            }
            Frame::Message { tag, data } => {
                put_u8(w, 1)?;
                put_u64(w, *tag)?;
                put_f32s(w, data)
            }
            Frame::Abort { message } => {
                put_u8(w, 2)?;
                put_bytes(w, message.as_bytes())
            }
        }
    }

    fn read(r: &mut impl io::Read) -> io::Result<Frame> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        match get_u8(r)? {
            0 => {
                let seq = get_u64(r)?;
                let kind = *KINDS
                    .get(get_u8(r)? as usize)
                    .ok_or_else(|| bad("bad kind"))?;
                let op = match get_u64(r)? {
                    NONE => None,
                    o => Some(*OPS.get(o as usize).ok_or_else(|| bad("bad reduce op"))?),
                };
                let root = match get_u64(r)? {
                    NONE => None,
                    x => Some(x as usize),
                };
                let count = get_u64(r)? as usize;
                let data = get_f32s(r)?;
                let call = Call {
                    kind,
                    count,
                    op,
                    root,
                    meet: None,
                };
                Ok(Frame::Round { seq, call, data })
            }
            1 => {
                let tag = get_u64(r)?;
                let data = get_f32s(r)?;
                Ok(Frame::Message { tag, data })
            }
            2 => Ok(Frame::Abort {
                message: get_string(r)?,
            }),
            k => Err(bad(&format!("unknown frame kind {k}"))),
        }
    }
}

/// Received frames of one (sender, slot), oldest first: the sender's call (rounds) and data.
pub(super) type Queue = VecDeque<(Option<Call>, Vec<f32>)>;

/// Frames received and not yet taken, and what is known about the peers.
pub(super) struct InboxState {
    /// (group rank of the sender, slot) -> (call, data) in arrival order.
    pub(super) frames: HashMap<(usize, Slot), Queue>,
    /// Why a peer's stream ended, once it has.
    pub(super) gone: Vec<Option<String>>,
    /// The group's first failure (here or reported by a peer); once set the group is unusable.
    pub(super) failed: Option<String>,
}

pub(super) struct Inbox {
    state: Mutex<InboxState>,
    pub(super) changed: Condvar,
}

impl Inbox {
    fn new(n: usize) -> Inbox {
        Inbox {
            state: Mutex::new(InboxState {
                frames: HashMap::new(),
                gone: vec![None; n],
                failed: None,
            }),
            changed: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for a change or the deadline; false once the deadline has passed.
    pub(super) fn wait<'a>(
        &self,
        st: MutexGuard<'a, InboxState>,
        deadline: Instant,
    ) -> (MutexGuard<'a, InboxState>, bool) {
        let now = Instant::now();
        if now >= deadline {
            return (st, false);
        }
        let st = self
            .changed
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        (st, true)
    }
}

/// The streams of one rank to its peers (None for itself) and its inbox.
pub(super) struct Mesh {
    pub(super) streams: Vec<Option<Mutex<TcpStream>>>,
    pub(super) inbox: Arc<Inbox>,
}

impl Mesh {
    /// Send one frame to group rank `to`. A failed write is not an error here: the peer's reader
    /// thread on this side reports it gone, and the wait that needs it names it.
    pub(super) fn send(&self, to: usize, frame: &Frame) {
        let Some(stream) = &self.streams[to] else {
            return;
        };
        let mut bytes = Vec::new();
        if frame.write(&mut bytes).is_ok() {
            let mut s = stream.lock().unwrap_or_else(PoisonError::into_inner);
            // A write that fails (or outlasts the write timeout: a frozen peer) leaves the stream
            // unframed; closing it makes the reader report the peer gone.
            if s.write_all(&bytes).is_err() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Close every stream: the peers see this rank leave; the reader threads exit.
    pub(super) fn close(&self) {
        for s in self.streams.iter().flatten() {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What a rank needs to join a group's mesh.
pub struct Rendezvous<'a> {
    pub store: &'a StoreClient,
    /// The group's key prefix in the store; unique per group and generation.
    pub name: &'a str,
    /// The host address peers reach this rank at (its listen socket binds to it).
    pub host: IpAddr,
    pub token: &'a str,
    pub timeout: Duration,
}

/// Join the mesh of group rank `rank` of the group with global ranks `ranks`.
pub(super) fn connect_mesh(rv: &Rendezvous<'_>, ranks: &[usize], rank: usize) -> Result<Mesh> {
    let n = ranks.len();
    let label = list(ranks);
    let fail = |what: String| collective_error(format!("connecting group {label}: {what}"));
    let listener = TcpListener::bind(SocketAddr::new(rv.host, 0)).map_err(|e| {
        fail(format!(
            "rank {}: cannot listen on {}: {e}",
            ranks[rank], rv.host
        ))
    })?;
    let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    rv.store
        .set(&format!("{}/{rank}", rv.name), addr.to_string().as_bytes())?;
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    for (peer, slot) in streams.iter_mut().enumerate().take(rank) {
        let key = format!("{}/{peer}", rv.name);
        let text = String::from_utf8_lossy(&rv.store.get(&key, rv.timeout)?).into_owned();
        let peer_addr: SocketAddr = text.parse().map_err(|_| {
            fail(format!(
                "rank {} published a bad address '{text}'",
                ranks[peer]
            ))
        })?;
        let mut s = connect_retrying(peer_addr, rv.timeout).map_err(|e| {
            fail(format!(
                "cannot reach rank {} at {peer_addr}: {e}",
                ranks[peer]
            ))
        })?;
        offer(&mut s, MAGIC, rv.token, rv.timeout).map_err(|why| {
            fail(format!(
                "rank {}: handshake with rank {} at {peer_addr}: {why}",
                ranks[rank], ranks[peer]
            ))
        })?;
        put_u64(&mut s, rank as u64).map_err(|e| fail(e.to_string()))?;
        meshed(&s, rv.timeout).map_err(|e| fail(e.to_string()))?;
        *slot = Some(s);
    }
    accept_higher(&listener, rv, ranks, rank, &mut streams).map_err(fail)?;
    let inbox = Arc::new(Inbox::new(n));
    let mut writers = Vec::with_capacity(n);
    for (peer, s) in streams.into_iter().enumerate() {
        let Some(s) = s else {
            writers.push(None);
            continue;
        };
        let reader = s.try_clone().map_err(|e| fail(e.to_string()))?;
        spawn_reader(reader, peer, ranks[peer], Arc::clone(&inbox)).map_err(fail)?;
        writers.push(Some(Mutex::new(s)));
    }
    Ok(Mesh {
        streams: writers,
        inbox,
    })
}

/// A stream past its handshake: reads wait as long as the schedule needs (the collectives have
/// their own deadlines); a write that a frozen peer blocks fails after `timeout`.
fn meshed(s: &TcpStream, timeout: Duration) -> io::Result<()> {
    set_timeouts(s, Some(timeout))?;
    s.set_read_timeout(None)
}

/// Accept one connection from every higher rank, each presenting the token and its rank.
fn accept_higher(
    listener: &TcpListener,
    rv: &Rendezvous<'_>,
    ranks: &[usize],
    rank: usize,
    streams: &mut [Option<TcpStream>],
) -> Result<(), String> {
    let deadline = Instant::now() + rv.timeout;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    while streams[rank + 1..].iter().any(Option::is_none) {
        let mut s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let missing: Vec<usize> = (rank + 1..ranks.len())
                    .filter(|&p| streams[p].is_none())
                    .map(|p| ranks[p])
                    .collect();
                return Err(format!(
                    "ranks {} did not connect to rank {} within {:?}",
                    list(&missing),
                    ranks[rank],
                    rv.timeout
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        set_timeouts(&s, Some(rv.timeout)).map_err(|e| e.to_string())?;
        // A stranger without the token is turned away; keep waiting for the real peers.
        if check_offer(&mut s, MAGIC, rv.token).is_err() {
            continue;
        }
        let peer = get_u64(&mut s).map_err(|e| e.to_string())? as usize;
        meshed(&s, rv.timeout).map_err(|e| e.to_string())?;
        match streams.get_mut(peer) {
            Some(slot @ None) if peer > rank => *slot = Some(s),
            _ => {
                return Err(format!(
                    "a peer announced itself as group rank {peer}, which is not a higher rank still expected"
                ));
            }
        }
    }
    Ok(())
}

/// File every frame from `peer` until its stream ends; then mark it gone and wake the waiters.
fn spawn_reader(
    stream: TcpStream,
    peer: usize,
    global: usize,
    inbox: Arc<Inbox>,
) -> Result<(), String> {
    let run = move || {
        let mut r = BufReader::with_capacity(1 << 16, stream);
        let why = loop {
            match Frame::read(&mut r) {
                Ok(frame) => file(&inbox, peer, frame),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    break "its connection closed".to_string();
                }
                Err(e) => break format!("its connection failed: {e}"),
            }
        };
        let mut st = inbox.lock();
        st.gone[peer] = Some(why);
        drop(st);
        inbox.changed.notify_all();
    };
    std::thread::Builder::new()
        .name(format!("weft-tcp-rank{global}"))
        .spawn(run)
        .map(|_| ())
        .map_err(|e| format!("cannot start a reader thread: {e}"))
}

/// File a frame from `peer` in the inbox and wake its readers.
pub(super) fn file(inbox: &Inbox, peer: usize, frame: Frame) {
    let mut st = inbox.lock();
    match frame {
        Frame::Round { seq, call, data } => st
            .frames
            .entry((peer, Slot::Round(seq)))
            .or_default()
            .push_back((Some(call), data)),
        Frame::Message { tag, data } => st
            .frames
            .entry((peer, Slot::Tag(tag)))
            .or_default()
            .push_back((None, data)),
        Frame::Abort { message } => {
            st.failed.get_or_insert(message);
        }
    }
    drop(st);
    inbox.changed.notify_all();
}
