//! `prepare` end to end on a small corpus: shards hold exactly the documents' GPT-2 tokens with
//! end-of-text between them, the val split takes its share in shards of its own, the manifest
//! names everything, and `--data DIR` resolves to the train shards with the manifest's vocabulary.

use std::path::PathBuf;

use weft_core::data::prepare::{PrepareOptions, prepare};
use weft_core::data::shards::DataSet;
use weft_core::data::tokenizer::Tokenizer;
use weft_core::data::{Manifest, TokenFile};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-prepare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn text_and_json_lines_become_shards_and_a_manifest() {
    let dir = temp("corpus");
    let docs: Vec<String> = (0..40)
        .map(|i| format!("Document {i}: the fox says 🦊 — 狐狸 #{i}."))
        .collect();
    let jsonl: String = docs
        .iter()
        .map(|d| format!("{}\n", serde_json::json!({ "text": d })))
        .collect();
    std::fs::write(dir.join("a.jsonl"), jsonl).unwrap();
    std::fs::write(dir.join("b.txt"), "A plain text file.\nSecond line.\n").unwrap();
    let o = PrepareOptions {
        inputs: vec![dir.join("a.jsonl"), dir.join("b.txt")],
        out_dir: dir.join("out"),
        tokenizer: Tokenizer::Gpt2,
        field: "text".into(),
        val_fraction: 0.25,
        shard_tokens: 100,
    };
    let mut calls = 0;
    let m = prepare(&o, &mut |_| {
        calls += 1;
        Ok(())
    })
    .unwrap();
    assert!(calls >= 1);
    assert_eq!(m, Manifest::open(&dir.join("out/data.json")).unwrap());
    assert_eq!(
        (m.tokenizer.as_str(), m.vocab_size, m.end_of_text),
        ("gpt2", 50257, Some(50256))
    );
    assert_eq!(m.documents, 41);
    let mut expected: Vec<u32> = Vec::new();
    for d in docs
        .iter()
        .map(String::as_str)
        .chain(["A plain text file.\nSecond line.\n"])
    {
        expected.extend(Tokenizer::Gpt2.encode(d));
        expected.push(50256);
    }
    let total = m.tokens("train") + m.tokens("val");
    assert_eq!(total, expected.len() as u64);
    let val = m.tokens("val") as f64 / total as f64;
    assert!((0.2..0.3).contains(&val), "val share {val}");
    // Shards are full but the last of each split, and their counts match the files.
    for s in &m.shards {
        let f = TokenFile::open(&dir.join("out").join(&s.path)).unwrap();
        assert_eq!(f.len() as u64, s.tokens);
        assert_eq!(s.sha256.len(), 64);
    }
    assert!(m.shards.iter().filter(|s| s.split == "train").count() > 2);
    assert!(m.shards.iter().any(|s| s.split == "val"));
    // --data DIR: the train shards and the vocabulary check.
    let d = DataSet::resolve(dir.join("out").to_str().unwrap()).unwrap();
    assert_eq!(
        d.shards.len(),
        m.shards.iter().filter(|s| s.split == "train").count()
    );
    assert_eq!(
        d.check_vocab(4096).unwrap_err().to_string(),
        "the model's vocabulary (4096) is smaller than the data's (50257 ids, \
         tokenizer gpt2): give --vocab 50257 or more"
    );
    assert!(d.check_vocab(50304).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_json_lines_name_the_file_and_line() {
    let dir = temp("badjson");
    std::fs::write(
        dir.join("x.jsonl"),
        "{\"text\": \"ok\"}\n{\"body\": \"no\"}\n",
    )
    .unwrap();
    let o = PrepareOptions {
        inputs: vec![dir.join("x.jsonl")],
        out_dir: dir.join("out"),
        tokenizer: Tokenizer::Byte,
        field: "text".into(),
        val_fraction: 0.0,
        shard_tokens: 1000,
    };
    let e = prepare(&o, &mut |_| Ok(())).unwrap_err();
    assert_eq!(e.code(), "WEFT_DATA");
    assert_eq!(
        e.to_string(),
        format!(
            "data file {}: line 2: no field 'text' (give --field NAME)",
            dir.join("x.jsonl").display()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_val_fraction_that_whole_units_cannot_meet_is_an_error() {
    let dir = temp("onepiece");
    std::fs::write(
        dir.join("small.txt"),
        "One small document, a single unit.\n",
    )
    .unwrap();
    let o = PrepareOptions {
        inputs: vec![dir.join("small.txt")],
        out_dir: dir.join("out"),
        tokenizer: Tokenizer::Gpt2,
        field: "text".into(),
        val_fraction: 0.1,
        shard_tokens: 1000,
    };
    let e = prepare(&o, &mut |_| Ok(())).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "data file {}: 10 train and 0 val tokens: --val-fraction 0.1 cannot be met with whole \
             units (units are documents, or 1 MB pieces of a text file); give more or smaller \
             documents, or another --val-fraction",
            dir.join("out").display()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}
