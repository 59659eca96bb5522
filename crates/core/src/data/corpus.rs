//! The built-in corpus: public-domain Shakespeare shipped in the repo (`data/corpus.txt`; origin
//! and licence in `data/README.md`), compiled into the binary so the demo trains offline.

use super::tokenizer;

/// The corpus text (Sonnets, Hamlet, Macbeth; ~373 KB of ASCII).
pub fn builtin_corpus() -> &'static str {
    include_str!("../../../../data/corpus.txt")
}

/// The corpus as byte-level tokens (vocabulary 256).
pub fn builtin_tokens() -> Vec<u16> {
    tokenizer::encode(builtin_corpus())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_the_shipped_text() {
        let c = builtin_corpus();
        assert!(
            (100_000..=1_000_000).contains(&c.len()),
            "{} bytes",
            c.len()
        );
        assert!(c.starts_with("THE SONNETS\nby William Shakespeare"));
        assert!(c.contains("To be, or not to be,"));
        assert!(c.ends_with("Whom we invite to see us crown'd at Scone.\n\n[Flourish. Exeunt.]\n"));
        // No licence boilerplate left behind.
        assert!(!c.to_lowercase().contains("gutenberg"));
    }

    #[test]
    fn tokens_cover_the_corpus_within_the_vocabulary() {
        let t = builtin_tokens();
        assert_eq!(t.len(), builtin_corpus().len());
        assert!(t.iter().all(|&x| usize::from(x) < tokenizer::VOCAB_SIZE));
        assert_eq!(tokenizer::decode(&t[..11]), "THE SONNETS");
    }
}
