//! llm.c token files and its data loader. A `.bin` file is a header of 256 little-endian i32
//! (`[0]` magic 20240520, `[1]` version 1, `[2]` token count, the rest zero) followed by that
//! many little-endian u16 tokens. The loader reproduces llm.c's batching exactly so a weft run and
//! an llm.c run on the same file see the same batches.

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::atomic;
use crate::error::{Error, Result};

pub const MAGIC: i32 = 20240520;
/// Version 1: GPT-2 tokens stored as u16. (llm.c's version 2 stores u32 LLaMA-3 tokens.)
pub const VERSION: i32 = 1;
/// Header size in i32s; in bytes it is `HEADER_INTS * 4` = 1024.
pub const HEADER_INTS: usize = 256;
pub(crate) const HEADER_BYTES: usize = HEADER_INTS * 4;

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A validated token file, held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenFile {
    path: PathBuf,
    tokens: Vec<u16>,
}

impl TokenFile {
    /// Read and validate an llm.c `.bin` token file.
    pub fn open(path: &Path) -> Result<TokenFile> {
        let bytes = fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let tokens = parse(&bytes, path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            tokens,
        })
    }

    /// Tokens that come from memory (e.g. the built-in corpus); `name` stands in for the path
    /// in error messages.
    pub fn from_tokens(name: impl Into<PathBuf>, tokens: Vec<u16>) -> TokenFile {
        TokenFile {
            path: name.into(),
            tokens,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tokens(&self) -> &[u16] {
        &self.tokens
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Splits off the last `fraction` of the tokens (at least one) as a held-out part that
    /// training never reads: `(train, held_out)`, both named after this file with their token
    /// range. A contiguous tail, not sampled windows, so no training window overlaps it.
    pub fn held_out(self, fraction: f64) -> Result<(TokenFile, TokenFile)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            let m =
                format!("a held-out fraction must be between 0 and 1 (exclusive), got {fraction}");
            return Err(err(&self.path, m));
        }
        let len = self.tokens.len();
        let held = ((len as f64 * fraction).ceil() as usize).clamp(1, len);
        let cut = len - held;
        let name = |part: &str, from: usize, to: usize| {
            PathBuf::from(format!(
                "{} ({part}, tokens {from}..{to})",
                self.path.display()
            ))
        };
        let train =
            TokenFile::from_tokens(name("training part", 0, cut), self.tokens[..cut].to_vec());
        let eval =
            TokenFile::from_tokens(name("held-out part", cut, len), self.tokens[cut..].to_vec());
        Ok((train, eval))
    }
}

fn header_int(bytes: &[u8], i: usize) -> i32 {
    i32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Vec<u16>> {
    check_header(bytes, bytes.len().saturating_sub(HEADER_BYTES) as u64, path)?;
    Ok(bytes[HEADER_BYTES..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// The token count of a `.bin` file, checked as `TokenFile::open` checks it, from its header
/// and size alone: a loader over many shards learns their sizes without reading them.
pub fn token_count(path: &Path) -> Result<usize> {
    let io = |e| Error::io(path.display().to_string(), e);
    let mut file = fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(HEADER_BYTES);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut file, HEADER_BYTES as u64),
        &mut head,
    )
    .map_err(io)?;
    check_header(&head, size.saturating_sub(HEADER_BYTES as u64), path)
}

/// Validates the header (`head`, at least its first bytes) against `body` bytes after it;
/// returns the token count.
fn check_header(head: &[u8], body: u64, path: &Path) -> Result<usize> {
    if head.len() < HEADER_BYTES {
        let m = format!(
            "file is {} bytes, shorter than the {HEADER_BYTES}-byte header",
            head.len()
        );
        return Err(err(path, m));
    }
    let magic = header_int(head, 0);
    if magic != MAGIC {
        let m = format!("bad magic number {magic} (expected {MAGIC}): not an llm.c token file");
        return Err(err(path, m));
    }
    let version = header_int(head, 1);
    if version != VERSION {
        let m = format!("unsupported version {version} (weft reads version {VERSION}: u16 tokens)");
        return Err(err(path, m));
    }
    let count = header_int(head, 2);
    let count = usize::try_from(count)
        .map_err(|_| err(path, format!("negative token count {count} in the header")))?;
    // Widen before multiplying: a hostile count must not overflow on 32-bit targets.
    let need = count as u64 * 2;
    if body < need {
        let m = format!(
            "too few tokens: the header says {count} tokens ({need} bytes) but only {body} bytes \
             follow the header"
        );
        return Err(err(path, m));
    }
    if body > need {
        // llm.c rejects any size mismatch; extra bytes mean a wrong count or a spliced file.
        let m = format!(
            "{} bytes follow the {count} tokens the header announces",
            body - need
        );
        return Err(err(path, m));
    }
    Ok(count)
}

/// The 1024-byte header of a version-1 file holding `count` tokens; `path` names the file in the
/// error when the count does not fit the header's i32.
pub fn header(path: &Path, count: usize) -> Result<Vec<u8>> {
    let count = i32::try_from(count).map_err(|_| {
        err(
            path,
            format!("{count} tokens do not fit the header's i32 count"),
        )
    })?;
    let mut header = [0i32; HEADER_INTS];
    header[0] = MAGIC;
    header[1] = VERSION;
    header[2] = count;
    Ok(header.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Write an llm.c version-1 token file atomically.
pub fn write_tokens(path: &Path, tokens: &[u16]) -> Result<()> {
    let mut bytes = header(path, tokens.len())?;
    bytes.reserve(2 * tokens.len());
    tokens
        .iter()
        .for_each(|t| bytes.extend_from_slice(&t.to_le_bytes()));
    atomic::write_atomic(path, &bytes)
}

/// One batch: `inputs` and `targets` are row-major `[B, T]`; `targets[i]` is the token after
/// `inputs[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub inputs: Vec<i32>,
    pub targets: Vec<i32>,
    pub shape: [usize; 2],
}

/// llm.c's sequential loader: each batch reads B*T+1 consecutive tokens at the current
/// position, then advances by B*T (so consecutive batches share one boundary token); when fewer
/// than B*T+1 tokens remain it wraps to the start.
#[derive(Debug, Clone)]
pub struct TokenLoader {
    file: TokenFile,
    b: usize,
    t: usize,
    pos: usize,
}

impl TokenLoader {
    pub fn new(file: TokenFile, b: usize, t: usize) -> Result<TokenLoader> {
        if b == 0 || t == 0 {
            return Err(Error::batch(format!(
                "B and T must be positive, got B={b}, T={t}"
            )));
        }
        let need = b
            .checked_mul(t)
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| Error::batch(format!("B*T overflows (B={b}, T={t})")))?;
        if file.len() < need {
            let m = format!(
                "has {} tokens, fewer than the B*T+1 = {need} one batch needs (B={b}, T={t})",
                file.len()
            );
            return Err(err(file.path(), m));
        }
        Ok(TokenLoader { file, b, t, pos: 0 })
    }

    pub fn file(&self) -> &TokenFile {
        &self.file
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.b, self.t]
    }

    /// Token index the next batch starts at (before any wrap).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Resume at a saved position (e.g. from a checkpoint).
    pub fn set_position(&mut self, pos: usize) -> Result<()> {
        if pos > self.file.len() {
            let m = format!(
                "position {pos} is past the end ({} tokens)",
                self.file.len()
            );
            return Err(err(self.file.path(), m));
        }
        self.pos = pos;
        Ok(())
    }

    pub fn reset(&mut self) {
        self.pos = 0;
    }

    pub fn next_batch(&mut self) -> TokenBatch {
        let n = self.b * self.t;
        let tokens = self.file.tokens();
        if self.pos + n + 1 > tokens.len() {
            self.pos = 0;
        }
        let window = &tokens[self.pos..self.pos + n + 1];
        self.pos += n;
        TokenBatch {
            inputs: window[..n].iter().map(|&x| i32::from(x)).collect(),
            targets: window[1..].iter().map(|&x| i32::from(x)).collect(),
            shape: [self.b, self.t],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::atomic::unique_temp_dir;

    fn header_bytes(magic: i32, version: i32, count: i32) -> Vec<u8> {
        let mut h = [0i32; HEADER_INTS];
        (h[0], h[1], h[2]) = (magic, version, count);
        h.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn open_err(bytes: &[u8]) -> String {
        parse(bytes, Path::new("train.bin"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn held_out_is_the_disjoint_tail_and_training_never_reads_it() {
        let tokens: Vec<u16> = (0..1000).collect();
        let file = TokenFile::from_tokens("c.bin", tokens);
        let (train, eval) = file.held_out(0.01).unwrap();
        assert_eq!(train.tokens(), &(0..990).collect::<Vec<u16>>()[..]);
        assert_eq!(eval.tokens(), &(990..1000).collect::<Vec<u16>>()[..]);
        assert_eq!(
            eval.path(),
            Path::new("c.bin (held-out part, tokens 990..1000)")
        );
        // A whole epoch and more of training windows stays below the cut.
        let mut loader = TokenLoader::new(train, 4, 8).unwrap();
        for _ in 0..100 {
            let b = loader.next_batch();
            assert!(b.inputs.iter().chain(&b.targets).all(|&t| t < 990));
        }
        let e = TokenFile::from_tokens("c.bin", vec![1, 2]).held_out(1.0);
        assert_eq!(
            e.unwrap_err().to_string(),
            "data file c.bin: a held-out fraction must be between 0 and 1 (exclusive), got 1"
        );
    }

    #[test]
    fn write_then_open_round_trips_in_the_llm_c_layout() {
        let dir = unique_temp_dir("tokens-rt");
        let path = dir.join("t.bin");
        let tokens = [0u16, 1, 50256, 65535, 42];
        write_tokens(&path, &tokens).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1024 + 10);
        assert_eq!(&bytes[..12], &header_bytes(MAGIC, 1, 5)[..12]);
        assert!(bytes[12..1024].iter().all(|&b| b == 0));
        assert_eq!(&bytes[1024..1028], &[0, 0, 1, 0]);
        let f = TokenFile::open(&path).unwrap();
        assert_eq!(f.tokens(), tokens);
        assert_eq!(f.path(), path);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn wrong_magic_names_found_and_expected() {
        assert_eq!(
            open_err(&header_bytes(20240000, 1, 0)),
            "data file train.bin: bad magic number 20240000 (expected 20240520): not an llm.c \
                token file"
        );
    }

    #[test]
    fn wrong_version() {
        assert_eq!(
            open_err(&header_bytes(MAGIC, 2, 0)),
            "data file train.bin: unsupported version 2 (weft reads version 1: u16 tokens)"
        );
    }

    #[test]
    fn too_few_tokens() {
        let mut bytes = header_bytes(MAGIC, 1, 4);
        bytes.extend_from_slice(&[1, 0, 2, 0, 3]);
        assert_eq!(
            open_err(&bytes),
            "data file train.bin: too few tokens: the header says 4 tokens (8 bytes) but only 5 \
             bytes follow the header"
        );
    }

    #[test]
    fn short_header_negative_count_and_trailing_bytes() {
        assert_eq!(
            open_err(&[0; 100]),
            "data file train.bin: file is 100 bytes, shorter than the 1024-byte header"
        );
        assert_eq!(
            open_err(&header_bytes(MAGIC, 1, -3)),
            "data file train.bin: negative token count -3 in the header"
        );
        let mut bytes = header_bytes(MAGIC, 1, 1);
        bytes.extend_from_slice(&[1, 0, 2, 0]);
        assert_eq!(
            open_err(&bytes),
            "data file train.bin: 2 bytes follow the 1 tokens the header announces"
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = unique_temp_dir("tokens-missing");
        assert_eq!(
            TokenFile::open(&dir.join("none.bin")).unwrap_err().code(),
            "WEFT_IO"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    fn loader(n: u16, b: usize, t: usize) -> TokenLoader {
        TokenLoader::new(TokenFile::from_tokens("mem", (0..n).collect()), b, t).unwrap()
    }

    #[test]
    fn batches_follow_llm_c_and_wrap() {
        // 11 tokens, B*T = 4: batches start at 0, 4; at 8 only 3 remain (< 5), so wrap to 0.
        let mut l = loader(11, 2, 2);
        let b0 = l.next_batch();
        assert_eq!(b0.inputs, [0, 1, 2, 3]);
        assert_eq!(b0.targets, [1, 2, 3, 4]);
        assert_eq!(b0.shape, [2, 2]);
        let b1 = l.next_batch();
        assert_eq!(
            (b1.inputs, b1.targets),
            (vec![4, 5, 6, 7], vec![5, 6, 7, 8])
        );
        assert_eq!(l.position(), 8);
        let b2 = l.next_batch();
        assert_eq!(
            b2.inputs,
            [0, 1, 2, 3],
            "must wrap when fewer than B*T+1 remain"
        );
        assert_eq!(l.position(), 4);
    }

    #[test]
    fn exactly_b_t_plus_one_remaining_is_used_before_wrapping() {
        let mut l = loader(9, 2, 2);
        l.next_batch();
        assert_eq!(l.next_batch().targets, [5, 6, 7, 8]);
        assert_eq!(l.next_batch().inputs, [0, 1, 2, 3]);
    }

    #[test]
    fn exactly_b_t_remaining_wraps_because_targets_need_one_more() {
        let mut l = loader(8, 1, 4);
        l.next_batch();
        assert_eq!(l.position(), 4);
        assert_eq!(l.next_batch().inputs, [0, 1, 2, 3]);
    }

    #[test]
    fn resume_at_a_saved_position() {
        let mut l = loader(20, 1, 3);
        l.set_position(6).unwrap();
        assert_eq!(l.next_batch().inputs, [6, 7, 8]);
        l.reset();
        assert_eq!(l.next_batch().inputs, [0, 1, 2]);
        assert_eq!(
            l.set_position(21).unwrap_err().to_string(),
            "data file mem: position 21 is past the end (20 tokens)"
        );
    }

    #[test]
    fn too_small_for_one_batch() {
        let f = TokenFile::from_tokens("tiny.bin", vec![1, 2, 3, 4]);
        let e = TokenLoader::new(f, 2, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data file tiny.bin: has 4 tokens, fewer than the B*T+1 = 5 one batch needs (B=2, T=2)"
        );
        let f = TokenFile::from_tokens("x", vec![1, 2]);
        assert_eq!(TokenLoader::new(f, 0, 1).unwrap_err().code(), "WEFT_BATCH");
    }
}
