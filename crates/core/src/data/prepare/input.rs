//! Reading the corpus as a stream of units (a piece of text and whether a document ends with
//! it), a bounded batch at a time. A text file is one document, read in pieces of about
//! `PIECE_BYTES` cut just after a newline that precedes a non-space character: GPT-2's
//! pre-tokenizer always ends a piece there, so cut and uncut text encode alike. A JSON Lines file
//! is one document per line, the string in `field`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Target size of one text piece: big enough to amortize a task, small enough to parallelize.
pub const PIECE_BYTES: usize = 1 << 20;

/// How input files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Text,
    /// One JSON object per line; the document is the string under this key.
    JsonLines {
        field: String,
    },
}

impl Format {
    /// `jsonl`/`ndjson` files are JSON Lines (with `field`), anything else text.
    pub fn for_path(path: &Path, field: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => Format::JsonLines {
                field: field.into(),
            },
            _ => Format::Text,
        }
    }
}

/// A piece of text to tokenize; `ends_document` adds the end-of-text token after it.
pub struct Unit {
    pub text: String,
    pub ends_document: bool,
}

/// One open input file.
pub struct Reader {
    path: PathBuf,
    format: Format,
    input: BufReader<File>,
    /// Bytes read but not yet handed out (text: the tail after the last safe cut).
    carry: Vec<u8>,
    line: u64,
    done: bool,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(path.display().to_string(), e)
}

impl Reader {
    pub fn open(path: &Path, format: Format) -> Result<Reader> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        Ok(Reader {
            path: path.to_path_buf(),
            format,
            input: BufReader::with_capacity(PIECE_BYTES, file),
            carry: Vec::new(),
            line: 0,
            done: false,
        })
    }

    /// The next unit, `None` at the end of the file.
    pub fn next_unit(&mut self) -> Result<Option<Unit>> {
        if self.done {
            return Ok(None);
        }
        match self.format.clone() {
            Format::Text => self.next_piece(),
            Format::JsonLines { field } => self.next_line(&field),
        }
    }

    fn next_piece(&mut self) -> Result<Option<Unit>> {
        let want = PIECE_BYTES.saturating_sub(self.carry.len()) as u64;
        let mut buf = std::mem::take(&mut self.carry);
        (&mut self.input)
            .take(want)
            .read_to_end(&mut buf)
            .map_err(|e| io(&self.path, e))?;
        let at_end = (buf.len() as u64) < PIECE_BYTES as u64
            || self
                .input
                .fill_buf()
                .map_err(|e| io(&self.path, e))?
                .is_empty();
        let cut = if at_end { buf.len() } else { safe_cut(&buf) };
        self.carry = buf.split_off(cut);
        self.done = at_end;
        let text = String::from_utf8(buf).map_err(|e| {
            self.data(format!(
                "not UTF-8 text (byte {} of a piece)",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(Some(Unit {
            text,
            ends_document: at_end,
        }))
    }

    fn next_line(&mut self, field: &str) -> Result<Option<Unit>> {
        loop {
            let mut line = String::new();
            let n = self
                .input
                .read_line(&mut line)
                .map_err(|e| io(&self.path, e))?;
            if n == 0 {
                self.done = true;
                return Ok(None);
            }
            self.line += 1;
            if line.trim().is_empty() {
                continue;
            }
            return self.document(&line, field).map(Some);
        }
    }

    fn document(&self, line: &str, field: &str) -> Result<Unit> {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| self.data(format!("line {}: not JSON: {e}", self.line)))?;
        match value.get(field) {
            Some(serde_json::Value::String(s)) => Ok(Unit {
                text: s.clone(),
                ends_document: true,
            }),
            Some(other) => Err(self.data(format!(
                "line {}: field '{field}' is not a string (got {other})",
                self.line
            ))),
            None => Err(self.data(format!(
                "line {}: no field '{field}' (give --field NAME)",
                self.line
            ))),
        }
    }

    fn data(&self, message: String) -> Error {
        Error::Data {
            path: self.path.display().to_string(),
            message,
        }
    }
}

/// Where to cut `buf` so both halves pre-tokenize as the whole does: before a space or newline
/// that sits between two ASCII non-space bytes (GPT-2's pieces never span such a separator: the
/// piece before it ends, and the separator starts the next piece or is one itself). A megabyte
/// with no such place (unbroken CJK, say) is cut at the last character boundary; only that
/// one seam may then tokenize differently from the uncut text.
fn safe_cut(buf: &[u8]) -> usize {
    let solid = |b: u8| b.is_ascii() && !b.is_ascii_whitespace();
    let seam = (2..buf.len())
        .rev()
        .find(|&i| matches!(buf[i - 1], b' ' | b'\n') && solid(buf[i - 2]) && solid(buf[i]));
    let boundary = || (1..buf.len()).rev().find(|&i| buf[i] & 0xc0 != 0x80);
    seam.map(|i| i - 1).or_else(boundary).unwrap_or(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_before_a_separator_between_text() {
        assert_eq!(safe_cut(b"ab\ncd\n  ef"), 2);
        assert_eq!(safe_cut(b"ab\ncd ef"), 5);
        assert_eq!(safe_cut("日本語".as_bytes()), 6);
    }

    #[test]
    fn cut_text_encodes_as_the_whole() {
        use crate::data::tokenizer::Tokenizer;
        let text = "Once upon a time,\r\nthere was  a fox.\nIt's 3 AM !\n\nThe end\n";
        let whole = Tokenizer::Gpt2.encode(text);
        let cut = safe_cut(text.as_bytes());
        let mut parts = Tokenizer::Gpt2.encode(&text[..cut]);
        parts.extend(Tokenizer::Gpt2.encode(&text[cut..]));
        assert_eq!(parts, whole);
        for cut in (2..text.len()).filter(|&i| safe_cut(&text.as_bytes()[..i + 1]) < i) {
            let c = safe_cut(&text.as_bytes()[..cut + 1]);
            let mut parts = Tokenizer::Gpt2.encode(&text[..c]);
            parts.extend(Tokenizer::Gpt2.encode(&text[c..]));
            assert_eq!(parts, whole, "cut at {c}");
        }
    }
}
