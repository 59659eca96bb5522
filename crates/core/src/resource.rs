//! Limits on sizes that come from users (model shapes, batch, vocabulary, communicators): checked
//! before anything is allocated, so a size that cannot fit is a `WEFT_RESOURCE` error naming the
//! quantity, its size and the limit, never an allocation abort or a thread spawned until the OS
//! refuses.

use crate::error::{Error, Result};

/// The largest global batch: batch sizes travel as 32-bit signed integers to JS and devices.
pub const MAX_BATCH: u64 = i32::MAX as u64;

/// Gradient channels (`communication.num_communicators`): each is a thread per device.
pub const MAX_COMMUNICATORS: u64 = 64;

/// This host's physical memory in bytes (Linux's `MemTotal`); None where unknown, and then only
/// the fixed limits apply.
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of `dims` elements of `elem` bytes each, saturating (user dims may overflow usize).
pub fn bytes_of(dims: &[usize], elem: usize) -> u128 {
    dims.iter()
        .fold(elem as u128, |acc, &d| acc.saturating_mul(d as u128))
}

/// `1.5 GiB`, for messages.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{bytes} bytes"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

/// `quantity` needs `bytes`; an error when that exceeds `limit` (named by `limit_name`).
pub fn check_bytes(quantity: &str, bytes: u128, limit: u64, limit_name: &str) -> Result<()> {
    if bytes <= limit as u128 {
        return Ok(());
    }
    Err(Error::resource(
        quantity,
        format!(
            "{quantity} needs {} ({bytes} bytes), more than {limit_name} ({})",
            human_bytes(bytes),
            human_bytes(limit as u128)
        ),
    ))
}

/// A count a user asked for (`quantity` = `n`); an error above `limit`.
pub fn check_count(quantity: &str, n: u64, limit: u64, why: &str) -> Result<()> {
    if n <= limit {
        return Ok(());
    }
    Err(Error::resource(
        quantity,
        format!("{quantity}={n} is more than the limit of {limit} ({why})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_limit_name_quantity_size_and_limit() {
        let big = bytes_of(&[100_000_000, 100_000_000], 4);
        assert_eq!(big, 40_000_000_000_000_000);
        let e = check_bytes("parameter 'w'", big, 1 << 30, "this host's memory").unwrap_err();
        assert_eq!(e.code(), "WEFT_RESOURCE");
        assert_eq!(
            e.to_string(),
            "parameter 'w' needs 35.5 PiB (40000000000000000 bytes), more than this host's \
             memory (1.0 GiB)"
        );
        assert_eq!(
            bytes_of(&[usize::MAX, usize::MAX, usize::MAX], 4),
            u128::MAX
        );
        assert!(check_bytes("x", 10, 10, "y").is_ok());
        let e = check_count(
            "communication.num_communicators",
            100_000,
            64,
            "a thread each",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "communication.num_communicators=100000 is more than the limit of 64 (a thread each)"
        );
    }
}
