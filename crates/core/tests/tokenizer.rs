//! GPT-2 BPE against ids from an independent implementation: `fixtures/tokenizer/gpt2.json` was
//! written by npm `js-tiktoken` (which bundles GPT-2's ranks) through `scripts/gpt2-fixture.mjs`,
//! on a fixed text with CJK, emoji (ZWJ sequences, flags), accents, whitespace runs, tabs, CRLF
//! and a literal `<|endoftext|>`; and decodes of bytes that are not UTF-8.

use serde_json::Value;
use weft_core::data::tokenizer::Tokenizer;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer/gpt2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn gpt2_encodes_as_js_tiktoken_and_round_trips() {
    let f = fixture();
    assert_eq!(f["vocab"], Tokenizer::Gpt2.vocab_size());
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        assert_eq!(Tokenizer::Gpt2.encode(text), expected, "encoding {text:?}");
        assert_eq!(Tokenizer::Gpt2.decode(&expected), text);
    }
}

#[test]
fn gpt2_decodes_invalid_utf8_as_js_tiktoken() {
    for case in fixture()["decodes"].as_array().unwrap() {
        let tokens = ids(&case["ids"]);
        assert_eq!(
            Tokenizer::Gpt2.decode(&tokens),
            case["text"].as_str().unwrap(),
            "decoding {tokens:?}"
        );
    }
}

#[test]
fn gpt2_end_of_text_and_ids_outside_the_vocabulary() {
    assert_eq!(Tokenizer::Gpt2.end_of_text(), Some(50256));
    assert_eq!(Tokenizer::Gpt2.decode(&[50256]), "<|endoftext|>");
    let hi = Tokenizer::Gpt2.encode("Hi");
    let mut t = hi.clone();
    t.push(50257);
    t.extend(&hi);
    assert_eq!(Tokenizer::Gpt2.decode(&t), "Hi\u{fffd}Hi");
}
