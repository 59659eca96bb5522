//! The up-front scan of token files: every token must be an id of the model's vocabulary, or the
//! embedding would fail deep into a run. A file is streamed in fixed-size chunks (shards may be
//! far larger than memory wants) and the first offending token is reported with its byte
//! offset, so the file can be inspected or cut there.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::tokens::{HEADER_BYTES, token_count};
use crate::error::{Error, Result};

/// Bytes read at a time: even, so a token never straddles two chunks.
const CHUNK_BYTES: usize = 1 << 20;

/// Errors (WEFT_DATA, naming the file, the token, its byte offset and index) at the first token
/// of the `.bin` file at `path` that is not below `vocab`; the header is checked as `open`
/// checks it.
pub fn check_token_range(path: &Path, vocab: usize) -> Result<()> {
    let count = token_count(path)?;
    let io = |e| Error::io(path.display().to_string(), e);
    let mut file = File::open(path).map_err(io)?;
    std::io::copy(
        &mut (&mut file).take(HEADER_BYTES as u64),
        &mut std::io::sink(),
    )
    .map_err(io)?;
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut index = 0usize;
    while index < count {
        let n = (2 * (count - index)).min(CHUNK_BYTES);
        file.read_exact(&mut chunk[..n]).map_err(io)?;
        let bad = chunk[..n]
            .chunks_exact(2)
            .position(|b| usize::from(u16::from_le_bytes([b[0], b[1]])) >= vocab);
        if let Some(i) = bad {
            let at = index + i;
            let token = u16::from_le_bytes([chunk[2 * i], chunk[2 * i + 1]]);
            return Err(Error::Data {
                path: path.display().to_string(),
                message: format!(
                    "token {token} at byte offset {} (token {at}) is not below the model's \
                     vocabulary size {vocab}",
                    HEADER_BYTES + 2 * at
                ),
            });
        }
        index += n / 2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::atomic::unique_temp_dir;
    use crate::data::write_tokens;

    #[test]
    fn in_range_files_pass_and_the_first_offender_is_named() {
        let dir = unique_temp_dir("scan");
        let path = dir.join("small.bin");
        write_tokens(&path, &[1, 2, 3, 9, 4, 12]).unwrap();
        check_token_range(&path, 13).unwrap();
        let e = check_token_range(&path, 9).unwrap_err();
        assert_eq!(e.code(), "WEFT_DATA");
        let want = format!(
            "data file {}: token 9 at byte offset 1030 (token 3) is not below the model's vocabulary \
             size 9",
            path.display()
        );
        assert_eq!(e.to_string(), want);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_large_file_reports_its_first_offender_past_the_first_chunks() {
        let dir = unique_temp_dir("scan-large");
        let path = dir.join("large.bin");
        // Three chunks and a half; offenders in the third chunk and near the end.
        let mut tokens = vec![7u16; 3 * CHUNK_BYTES / 2 + 1234];
        let first = CHUNK_BYTES + 17;
        tokens[first] = 50257;
        tokens[first + 5] = 60000;
        let last = tokens.len() - 1;
        tokens[last] = 65535;
        write_tokens(&path, &tokens).unwrap();
        let e = check_token_range(&path, 50257).unwrap_err();
        let want = format!(
            "data file {}: token 50257 at byte offset {} (token {first}) is not below the model's \
             vocabulary size 50257",
            path.display(),
            1024 + 2 * first
        );
        assert_eq!(e.to_string(), want);
        check_token_range(&path, 65536).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
