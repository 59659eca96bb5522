//! The store's wire decoders as the fuzz tests (`crate::fuzz_tests`) drive them: the handshake a
//! stranger sends before the token, and the requests an authenticated client sends after it.

use std::io;
use std::time::Duration;

use super::store::{StoreLimits, Table, serve_on};
use super::wire::{MAX_HANDSHAKE_FIELD, parse_offer, put_bytes, put_i64, put_u8, put_u64};
use crate::collectives::communicator::collective_error;
use crate::error::Result;

/// Valid handshakes, and a valid stream of every request kind.
pub(crate) fn seeds() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut offer = Vec::new();
    put_bytes(&mut offer, b"weft-store-1").unwrap();
    put_bytes(&mut offer, b"secret-token").unwrap();
    let mut reqs = Vec::new();
    let w = &mut reqs;
    (|| -> io::Result<()> {
        put_u8(w, 1)?; // set
        put_bytes(w, b"k")?;
        put_bytes(w, b"value")?;
        put_u8(w, 2)?; // get
        put_bytes(w, b"k")?;
        put_u64(w, 0)?;
        put_u8(w, 3)?; // add
        put_bytes(w, b"n")?;
        put_i64(w, -5)?;
        put_u8(w, 4)?; // wait
        put_u64(w, 2)?;
        put_bytes(w, b"k")?;
        put_bytes(w, b"n")?;
        put_u64(w, 0)?;
        put_u8(w, 5)?; // list
        put_bytes(w, b"")?;
        put_u8(w, 6)?; // delete
        put_bytes(w, b"k")
    })()
    .unwrap();
    (vec![offer], vec![reqs])
}

/// Parse a handshake; a complete one must respect the field limit.
pub(crate) fn decode_offer(bytes: &[u8]) -> Result<()> {
    match parse_offer(bytes).map_err(collective_error)? {
        Some((m, t))
            if m.len() as u64 > MAX_HANDSHAKE_FIELD || t.len() as u64 > MAX_HANDSHAKE_FIELD =>
        {
            panic!("a handshake field over the limit was accepted")
        }
        _ => Ok(()),
    }
}

/// Serve a byte stream of requests against a fresh table; the store never waits here.
pub(crate) fn decode_requests(bytes: &[u8]) -> Result<()> {
    let limits = StoreLimits {
        max_value: 1 << 16,
        max_keys: 64,
        max_wait: Duration::ZERO,
        ..StoreLimits::default()
    };
    serve_on(bytes, io::sink(), &Table::default(), &limits)
        .map_err(|e| collective_error(format!("store request: {e}")))
}
