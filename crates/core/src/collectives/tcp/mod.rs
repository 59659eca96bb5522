//! Collectives between processes over TCP (std::net only).
//!
//! - `store`: the rendezvous key-value store rank 0 hosts (set, blocking get, add, wait, prefix
//!   list and delete; a shared-secret token checked on connect; `StoreLimits`).
//! - `accept`: the store's accept loop, holding unauthenticated connections without a thread.
//! - `link`: one group's full mesh of streams, set up through the store, and the reader threads
//!   that file arriving frames; a peer whose stream ends is marked gone at once.
//! - `comm`: `TcpCommunicator`, the `Communicator` trait over the mesh, bit-identical to
//!   `LocalGroup` (the same rank-order reduction) and failing with the same words.
//! - `wire`: byte framing and the token handshake.

mod accept;
mod comm;
mod link;
mod store;
mod wire;

pub use comm::TcpCommunicator;
pub use link::Rendezvous;
pub use store::{StoreClient, StoreLimits, StoreServer};

#[cfg(test)]
pub(crate) mod fuzz;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
