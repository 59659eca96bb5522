//! `ProcessWorld`: this process's membership in a job of several processes. Rank 0 hosts the
//! store at `MASTER_ADDR:MASTER_PORT`; every process connects to it, and all of them form a
//! group with one rank per process for the step's scalars (losses, norms) and for checking
//! that every process compiled the same layout. Device groups (the gradient reducer's) are
//! made on demand with `group`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::env::ProcessRank;
use super::orphan::exit_with_launcher;
use crate::collectives::tcp::{Rendezvous, StoreClient, StoreServer, TcpCommunicator};
use crate::error::{Error, Result};

pub struct ProcessWorld {
    pub rank: ProcessRank,
    /// The store itself, hosted by rank 0 for as long as the world lives.
    _server: Option<StoreServer>,
    store: StoreClient,
    /// The address of this host that the peers reach (the one its store connection uses).
    host: IpAddr,
    pub timeout: Duration,
    /// One rank per process.
    pub procs: TcpCommunicator,
    /// Groups made so far: each gets its own store prefix.
    groups: AtomicU64,
    /// What the user should know about this job's store (no token on loopback).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for ProcessWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessWorld")
            .field("rank", &self.rank)
            .finish()
    }
}

impl ProcessWorld {
    /// Join the job: rank 0 starts the store; everyone connects and meets the others. Waits up
    /// to `timeout` for the store and for every process (naming the ranks that did not come).
    /// `insecure` is `communication.insecure_store` (see `store_security`).
    pub fn join(rank: &ProcessRank, timeout: Duration, insecure: bool) -> Result<ProcessWorld> {
        if let Some(fd) = rank.launcher_fd {
            exit_with_launcher(fd, rank.rank)?;
        }
        let addr = resolve(&rank.master_addr, rank.master_port)?;
        let warnings = store_security(rank, addr, insecure)?;
        let server = match rank.rank {
            0 => Some(StoreServer::bind(addr, &rank.token)?),
            _ => None,
        };
        let who = format!("rank {}", rank.rank);
        let store = StoreClient::connect(addr, &rank.token, timeout, &who)?;
        let host = store.local_addr().ip();
        let rv = Rendezvous {
            store: &store,
            name: "procs",
            host,
            token: &rank.token,
            timeout,
        };
        let all: Vec<usize> = (0..rank.world).collect();
        let procs = TcpCommunicator::connect(&rv, &all, rank.rank)?;
        Ok(ProcessWorld {
            rank: rank.clone(),
            _server: server,
            store,
            host,
            timeout,
            procs,
            groups: AtomicU64::new(0),
            warnings,
        })
    }

    /// The job's store, for other rendezvous data (e.g. an NCCL unique id set by rank 0).
    pub fn store(&self) -> &StoreClient {
        &self.store
    }

    /// A store key prefix for one more group (`group3`), from the counter `group` numbers
    /// its groups with: every process reserves its groups in the same order, so the prefixes
    /// agree.
    pub fn group_key(&self) -> String {
        format!("group{}", self.groups.fetch_add(1, Ordering::Relaxed))
    }

    /// This process's members of a group over global device `ranks`: one communicator per
    /// entry of `members` (group ranks hosted here), connected concurrently because the members
    /// of one process must meet each other too. Every process must make the same groups in the
    /// same order.
    pub fn group(&self, ranks: &[usize], members: &[usize]) -> Result<Vec<TcpCommunicator>> {
        let name = self.group_key();
        let rv = Rendezvous {
            store: &self.store,
            name: &name,
            host: self.host,
            token: &self.rank.token,
            timeout: self.timeout,
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = members
                .iter()
                .map(|&m| {
                    let rv = &rv;
                    s.spawn(move || TcpCommunicator::connect(rv, ranks, m))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::internal("a thread connecting a group panicked"))
                    })
                })
                .collect()
        })
    }
}

/// Without a token the store trusts whoever connects: acceptable on loopback (a warning), refused
/// on an address other hosts reach unless `insecure` (`communication.insecure_store`).
fn store_security(rank: &ProcessRank, addr: SocketAddr, insecure: bool) -> Result<Vec<String>> {
    if !rank.token.is_empty() {
        return Ok(Vec::new());
    }
    let launcher = rank.launcher.name();
    if addr.ip().is_loopback() {
        return Ok(vec![format!(
            "WEFT_STORE_TOKEN is not set (started by {launcher}): the store at {addr} accepts \
             any process of this host; set WEFT_STORE_TOKEN to the same secret on every rank"
        )]);
    }
    if insecure {
        return Ok(vec![format!(
            "communication.insecure_store=true: the store at {addr} accepts anyone who reaches \
             it, without a token"
        )]);
    }
    Err(Error::config(
        "WEFT_STORE_TOKEN",
        format!(
            "WEFT_STORE_TOKEN is not set (started by {launcher}) and the store at {addr} is not \
             on loopback: anyone who reaches it could read and change the job's keys; set \
             WEFT_STORE_TOKEN to the same secret on every rank (README: Security), or \
             communication.insecure_store=true to accept the risk"
        ),
    ))
}

/// `MASTER_ADDR:MASTER_PORT` as a socket address (host names are resolved; IPv4 first).
fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let bad = |why: String| Error::config("MASTER_ADDR", format!("MASTER_ADDR='{host}': {why}"));
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve it: {e}")))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| bad("it resolves to no address".into()))
}

#[cfg(test)]
mod tests;
