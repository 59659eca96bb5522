//! Byte framing shared by the store and the TCP communicator: little-endian integers,
//! length-prefixed byte strings and f32 payloads, and the connect handshake that checks the
//! shared-secret token. Plain `Read`/`Write`, so both sides of every exchange are the same code.
//!
//! Nothing a peer announces is trusted before its token is checked: the handshake's fields are
//! at most `MAX_HANDSHAKE_FIELD` bytes, so a stranger costs a few hundred bytes, never the
//! length it claims.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest byte string an authenticated peer may announce (a payload of the communicator).
/// A corrupted stream must not make us allocate more.
pub(super) const MAX_BYTES: u64 = 1 << 30;

/// The longest magic or token a peer may announce before it is authenticated.
pub(super) const MAX_HANDSHAKE_FIELD: u64 = 256;

/// The most bytes a whole handshake offer takes (two length-prefixed fields).
pub(super) const MAX_OFFER: usize = 2 * (8 + MAX_HANDSHAKE_FIELD as usize);

pub(super) fn put_u8(w: &mut impl Write, v: u8) -> io::Result<()> {
    w.write_all(&[v])
}

pub(super) fn put_u64(w: &mut impl Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub(super) fn put_i64(w: &mut impl Write, v: i64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub(super) fn put_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    put_u64(w, b.len() as u64)?;
    w.write_all(b)
}

pub(super) fn get_u8(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

pub(super) fn get_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub(super) fn get_i64(r: &mut impl Read) -> io::Result<i64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(i64::from_le_bytes(b))
}

pub(super) fn get_bytes(r: &mut impl Read) -> io::Result<Vec<u8>> {
    get_bytes_max(r, MAX_BYTES)
}

/// A length-prefixed byte string of at most `max` bytes; a longer announcement is refused
/// before anything is allocated for it.
pub(super) fn get_bytes_max(r: &mut impl Read, max: u64) -> io::Result<Vec<u8>> {
    let len = get_u64(r)?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a peer announced {len} bytes (the limit is {max}); not a weft peer?"),
        ));
    }
    let mut b = vec![0u8; len as usize];
    r.read_exact(&mut b)?;
    Ok(b)
}

pub(super) fn get_string(r: &mut impl Read) -> io::Result<String> {
    get_string_max(r, MAX_BYTES)
}

/// A UTF-8 string of at most `max` bytes.
pub(super) fn get_string_max(r: &mut impl Read, max: u64) -> io::Result<String> {
    String::from_utf8(get_bytes_max(r, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a string is not UTF-8"))
}

/// f32 values as `put_bytes` would send their little-endian bytes (the wire format of every
/// payload), written straight from the slice.
pub(super) fn put_f32s(w: &mut impl Write, values: &[f32]) -> io::Result<()> {
    put_u64(w, (values.len() * 4) as u64)?;
    for v in values {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// The inverse of `put_f32s`; bits travel unchanged, NaN payloads included.
pub(super) fn get_f32s(r: &mut impl Read) -> io::Result<Vec<f32>> {
    let bytes = get_bytes(r)?;
    if bytes.len() % 4 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a payload of {} bytes is not f32 values", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// What the accepting side answers to a handshake.
const ACCEPTED: u8 = 1;
const REFUSED: u8 = 0;

/// The connecting side of a handshake: send `magic` and the token, read the verdict within
/// `deadline` (a listener that accepts and never answers is an error, not a hang). A refusal
/// comes back as the server's reason. The stream keeps `deadline` as its read and write timeout.
pub(super) fn offer(
    stream: &mut TcpStream,
    magic: &[u8],
    token: &str,
    deadline: Duration,
) -> Result<(), String> {
    let io = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!(
                "no answer to the handshake within {deadline:?} (is the peer frozen, or not weft?)"
            )
        }
        _ => format!("handshake failed: {e}"),
    };
    set_timeouts(stream, Some(deadline)).map_err(io)?;
    put_bytes(stream, magic).map_err(io)?;
    put_bytes(stream, token.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;
    match get_u8(stream).map_err(io)? {
        ACCEPTED => Ok(()),
        _ => Err(format!(
            "refused: {}",
            get_string_max(stream, MAX_HANDSHAKE_FIELD).map_err(io)?
        )),
    }
}

/// Read and write timeouts of a stream (None: wait forever).
pub(super) fn set_timeouts(stream: &TcpStream, t: Option<Duration>) -> io::Result<()> {
    // A zero duration is refused by the OS API; a millisecond is the shortest real wait.
    let t = t.map(|d| d.max(Duration::from_millis(1)));
    stream.set_read_timeout(t)?;
    stream.set_write_timeout(t)
}

/// A handshake offer's two fields: the magic and the token.
pub(super) type Offer = (Vec<u8>, Vec<u8>);

/// The two fields of a handshake offer: the magic and the token.
fn read_offer(r: &mut impl Read) -> io::Result<Offer> {
    let magic = get_bytes_max(r, MAX_HANDSHAKE_FIELD)?;
    Ok((magic, get_bytes_max(r, MAX_HANDSHAKE_FIELD)?))
}

/// A handshake offer parsed from the bytes received so far: `Ok(None)` while incomplete, the
/// magic and token once whole, an error for a field over `MAX_HANDSHAKE_FIELD` bytes. Lets a
/// poll loop handle many strangers without a thread or a buffer beyond `MAX_OFFER` each.
pub(super) fn parse_offer(buf: &[u8]) -> Result<Option<Offer>, String> {
    match read_offer(&mut &buf[..]) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(format!("a client's handshake failed: {e}")),
    }
}

/// Why an offer of (`got_magic`, `got_token`) is refused, or None when it is accepted. The
/// token comparison takes the same time wherever the first difference is.
pub(super) fn refusal(
    got_magic: &[u8],
    got_token: &[u8],
    magic: &[u8],
    token: &str,
) -> Option<String> {
    let token = token.as_bytes();
    let same_token = got_token.len() == token.len()
        && got_token
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if got_magic != magic {
        Some("the peer does not speak this protocol (wrong magic)".to_string())
    } else if !same_token {
        Some("WEFT_STORE_TOKEN does not match this job's token".to_string())
    } else {
        None
    }
}

/// Send the verdict on an offer (`refusal`'s result); returns why it refused.
pub(super) fn answer_offer(stream: &mut impl Write, why: Option<String>) -> Result<(), String> {
    match why {
        None => put_u8(stream, ACCEPTED)
            .and_then(|_| stream.flush())
            .map_err(|e| e.to_string()),
        Some(why) => {
            let _ = put_u8(stream, REFUSED)
                .and_then(|_| put_bytes(stream, why.as_bytes()))
                .and_then(|_| stream.flush());
            Err(why)
        }
    }
}

/// The accepting side on a blocking stream (whose read timeout bounds the wait): check the
/// magic and the token, answer. Returns why it refused.
pub(super) fn check_offer(stream: &mut TcpStream, magic: &[u8], token: &str) -> Result<(), String> {
    let (got_magic, got_token) =
        read_offer(stream).map_err(|e| format!("a client's handshake failed: {e}"))?;
    answer_offer(stream, refusal(&got_magic, &got_token, magic, token))
}

/// Connect to `addr`, retrying while nothing listens there yet (the peer may still be starting)
/// until `timeout` has passed.
pub(super) fn connect_retrying(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1))) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if Instant::now() + pause >= deadline => return Err(e),
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}
