//! Byte framing shared by the store and the TCP communicator: little-endian integers,
//! length-prefixed byte strings and f32 payloads, and the connect handshake that checks the
//! shared-secret token. Plain `Read`/`Write`, so both sides of every exchange are the same code.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest byte string a peer may announce (keys, values, tokens, names). A peer that is
/// not weft (or a corrupted stream) must not make us allocate gigabytes.
pub(super) const MAX_BYTES: u64 = 1 << 30;

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
    let len = get_u64(r)?;
    if len > MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a peer announced {len} bytes (more than {MAX_BYTES}); not a weft peer?"),
        ));
    }
    let mut b = vec![0u8; len as usize];
    r.read_exact(&mut b)?;
    Ok(b)
}

pub(super) fn get_string(r: &mut impl Read) -> io::Result<String> {
    String::from_utf8(get_bytes(r)?)
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

/// The connecting side of a handshake: send `magic` and the token, read the verdict. A refusal
/// comes back as the server's reason.
pub(super) fn offer(stream: &mut TcpStream, magic: &[u8], token: &str) -> Result<(), String> {
    let io = |e: io::Error| format!("handshake failed: {e}");
    put_bytes(stream, magic).map_err(io)?;
    put_bytes(stream, token.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;
    match get_u8(stream).map_err(io)? {
        ACCEPTED => Ok(()),
        _ => Err(get_string(stream).map_err(io)?),
    }
}

/// The accepting side: check the magic and the token, answer. Returns why it refused.
pub(super) fn check_offer(stream: &mut TcpStream, magic: &[u8], token: &str) -> Result<(), String> {
    let (got_magic, got_token) = match get_bytes(stream).and_then(|m| Ok((m, get_bytes(stream)?))) {
        Ok(x) => x,
        Err(e) => return Err(format!("a client's handshake failed: {e}")),
    };
    let why = if got_magic != magic {
        Some("the peer does not speak this protocol (wrong magic)".to_string())
    } else if got_token != token.as_bytes() {
        Some("WEFT_STORE_TOKEN does not match this job's token".to_string())
    } else {
        None
    };
    match why {
        None => put_u8(stream, ACCEPTED).map_err(|e| e.to_string()),
        Some(why) => {
            let _ = put_u8(stream, REFUSED).and_then(|_| put_bytes(stream, why.as_bytes()));
            Err(why)
        }
    }
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
