//! Byte-level tokenizer: token = byte value, vocabulary 256. Deliberately trivial: it needs no
//! vocabulary file, round-trips any text exactly, and makes the built-in demo self-contained.

/// Number of distinct tokens.
pub const VOCAB_SIZE: usize = 256;

/// One token per UTF-8 byte.
pub fn encode(text: &str) -> Vec<u16> {
    text.bytes().map(u16::from).collect()
}

/// Bytes back to text. A model may emit a token >= 256 (if its vocabulary is padded) or a byte
/// sequence that is not UTF-8; both become U+FFFD rather than an error, since generated text is
/// for display.
pub fn decode(tokens: &[u16]) -> String {
    super::lossy(tokens.iter().map(|&t| u32::from(t)), token_bytes)
}

/// The byte a token stands for; none above 255.
pub(super) fn token_bytes(t: u32) -> Option<Vec<u8>> {
    u8::try_from(t).ok().map(|b| vec![b])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_bytes() {
        assert_eq!(encode("Hi!\n"), [72, 105, 33, 10]);
        assert_eq!(encode("é"), [0xc3, 0xa9]);
        assert!(encode("").is_empty());
    }

    #[test]
    fn round_trips_unicode() {
        let s = "To be, or not to be — ça va? 🎭";
        assert_eq!(decode(&encode(s)), s);
    }

    #[test]
    fn decodes_invalid_input_lossily() {
        assert_eq!(decode(&[72, 0xff, 105]), "H\u{fffd}i");
        assert_eq!(decode(&[0xc3]), "\u{fffd}");
        assert_eq!(decode(&[65, 300, 66]), "A\u{fffd}B");
        // A multi-byte char split by an out-of-range token is not glued back together.
        assert_eq!(decode(&[0xc3, 256, 0xa9]), "\u{fffd}\u{fffd}\u{fffd}");
    }
}
