//! Matching a loaded file against the tensors a model expects. All mismatches are collected
//! into one error, because a user fixing a converted checkpoint wants the whole list at once,
//! not one re-run per problem.

use std::collections::BTreeMap;
use std::path::Path;

use super::safetensors::SafeTensors;
use crate::error::{Error, Result};

/// At most this many problems are spelled out; the rest are counted.
const MAX_LISTED: usize = 8;

/// Check that `file` holds exactly the `expected` (name, shape) tensors: reports missing
/// tensors, tensors with the wrong shape, and unexpected extra tensors, in that order.
pub fn check_against(
    expected: &[(String, Vec<usize>)],
    file: &SafeTensors,
    path: &Path,
) -> Result<()> {
    let found: BTreeMap<&str, &[usize]> = file
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice()))
        .collect();
    let wanted: BTreeMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let mut problems = Vec::new();
    for (name, shape) in expected {
        if !found.contains_key(name.as_str()) {
            problems.push(format!(
                "missing tensor '{name}' (expected shape {shape:?})"
            ));
        }
    }
    for (name, shape) in expected {
        if let Some(got) = found
            .get(name.as_str())
            .filter(|got| **got != shape.as_slice())
        {
            problems.push(format!(
                "tensor '{name}' has shape {got:?} but the model expects {shape:?}"
            ));
        }
    }
    for t in &file.tensors {
        if !wanted.contains_key(t.name.as_str()) {
            problems.push(format!(
                "unexpected tensor '{}' (shape {:?})",
                t.name, t.shape
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Checkpoint {
        path: path.display().to_string(),
        message: summarize(&problems),
    })
}

fn summarize(problems: &[String]) -> String {
    if problems.len() == 1 {
        return problems[0].clone();
    }
    let mut msg = format!("{} problems: ", problems.len());
    msg.push_str(&problems[..problems.len().min(MAX_LISTED)].join("; "));
    if problems.len() > MAX_LISTED {
        msg.push_str(&format!("; and {} more", problems.len() - MAX_LISTED));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TensorEntry;
    use crate::tensor::HostData;

    fn file(tensors: &[(&str, Vec<usize>)]) -> SafeTensors {
        let tensors = tensors
            .iter()
            .map(|(n, s)| {
                let len = s.iter().product();
                TensorEntry::new(*n, s.clone(), HostData::F32(vec![0.0; len]))
            })
            .collect();
        SafeTensors {
            tensors,
            metadata: BTreeMap::new(),
        }
    }

    fn expected() -> Vec<(String, Vec<usize>)> {
        vec![
            ("wte.weight".into(), vec![4, 2]),
            ("ln_f.bias".into(), vec![2]),
        ]
    }

    fn check_msg(f: &SafeTensors) -> String {
        check_against(&expected(), f, Path::new("gpt2.safetensors"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn exact_match_passes() {
        let f = file(&[("ln_f.bias", vec![2]), ("wte.weight", vec![4, 2])]);
        check_against(&expected(), &f, Path::new("x")).unwrap();
    }

    #[test]
    fn reports_a_missing_tensor() {
        let f = file(&[("wte.weight", vec![4, 2])]);
        assert_eq!(
            check_msg(&f),
            "checkpoint gpt2.safetensors: missing tensor 'ln_f.bias' (expected shape [2])"
        );
    }

    #[test]
    fn reports_an_unexpected_tensor() {
        let f = file(&[
            ("wte.weight", vec![4, 2]),
            ("ln_f.bias", vec![2]),
            ("lm_head", vec![1]),
        ]);
        assert_eq!(
            check_msg(&f),
            "checkpoint gpt2.safetensors: unexpected tensor 'lm_head' (shape [1])"
        );
    }

    #[test]
    fn reports_a_wrong_shape_with_both_shapes() {
        let f = file(&[("wte.weight", vec![5, 2]), ("ln_f.bias", vec![2])]);
        assert_eq!(
            check_msg(&f),
            "checkpoint gpt2.safetensors: tensor 'wte.weight' has shape [5, 2] but the model \
                expects [4, 2]"
        );
    }

    #[test]
    fn lists_several_problems_and_counts_the_rest() {
        let f = file(&[("wte.weight", vec![2, 4])]);
        assert_eq!(
            check_msg(&f),
            "checkpoint gpt2.safetensors: 2 problems: missing tensor 'ln_f.bias' (expected shape \
             [2]); tensor 'wte.weight' has shape [2, 4] but the model expects [4, 2]"
        );
        let many: Vec<(String, Vec<usize>)> = (0..10).map(|i| (format!("t{i}"), vec![1])).collect();
        let e = check_against(&many, &file(&[]), Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("checkpoint x: 10 problems: missing tensor 't0'"),
            "{e}"
        );
        assert!(
            e.ends_with("missing tensor 't7' (expected shape [1]); and 2 more"),
            "{e}"
        );
    }
}
