//! Nearest-name suggestions for misspelled keys ("did you mean ...?"), shared by the config keys
//! and the optimizer options.

/// Levenshtein edit distance (insertions, deletions, substitutions) over chars.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The part after the last '.', or the whole name.
fn attribute(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// How far `input` is from `candidate`: the full edit distance, or — when only the section is
/// wrong or missing — the attribute's edit distance plus one.
fn score(input: &str, candidate: &str) -> usize {
    let full = levenshtein(input, candidate);
    let by_attribute = levenshtein(attribute(input), attribute(candidate)) + 1;
    full.min(by_attribute)
}

/// The candidate nearest to `input`, or None when nothing is plausibly what was meant. Ties go
/// to the earliest candidate.
pub(crate) fn nearest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    let limit = 2.max(input.chars().count() / 3);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let s = score(&input, &candidate.to_ascii_lowercase());
        if s <= limit && best.is_none_or(|(b, _)| s < b) {
            best = Some((s, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `camelCase` → `snake_case`; snake_case input is returned unchanged.
pub(crate) fn camel_to_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `snake_case` → `camelCase`.
pub(crate) fn snake_to_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "ab"), 2);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("pipline", "pipeline"), 1);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
    }

    const KEYS: &[&str] = &[
        "pipeline.num_micro_batch",
        "zero.level",
        "amp.level",
        "amp.loss_scale",
    ];

    #[test]
    fn nearest_by_full_key() {
        let got = nearest("pipline.num_micro_batch", KEYS.iter().copied());
        assert_eq!(got, Some("pipeline.num_micro_batch"));
        assert_eq!(
            nearest("zero.levle", KEYS.iter().copied()),
            Some("zero.level")
        );
        // The right section beats an equally close attribute in an earlier section.
        assert_eq!(nearest("amp.levl", KEYS.iter().copied()), Some("amp.level"));
    }

    #[test]
    fn nearest_by_attribute_when_section_is_wrong_or_missing() {
        assert_eq!(
            nearest("loss_scale", KEYS.iter().copied()),
            Some("amp.loss_scale")
        );
        assert_eq!(
            nearest("mixed.loss_scal", KEYS.iter().copied()),
            Some("amp.loss_scale")
        );
        assert_eq!(
            nearest("pp.num_micro_batch", KEYS.iter().copied()),
            Some("pipeline.num_micro_batch")
        );
    }

    #[test]
    fn nearest_ties_go_to_first_and_far_names_get_none() {
        assert_eq!(nearest("level", KEYS.iter().copied()), Some("zero.level"));
        assert_eq!(
            nearest("learning_rate_schedule", KEYS.iter().copied()),
            None
        );
    }

    #[test]
    fn case_conversions() {
        assert_eq!(camel_to_snake("numMicroBatch"), "num_micro_batch");
        assert_eq!(camel_to_snake("fp16Scale"), "fp16_scale");
        assert_eq!(camel_to_snake("gradientCheckpoint"), "gradient_checkpoint");
        assert_eq!(camel_to_snake("already_snake"), "already_snake");
        assert_eq!(camel_to_snake("Leading"), "leading");
        assert_eq!(snake_to_camel("weight_decay"), "weightDecay");
        assert_eq!(snake_to_camel("lr"), "lr");
    }
}
