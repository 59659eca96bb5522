//! The key/value-cached decoder: the logits it gives one position at a time equal a full-window
//! evaluation of the same model, its greedy continuation of the Hugging Face fixture equals HF's
//! `generate(do_sample=False)`, and a model without GPT-2's structure says why it has no cache.

mod common;

use common::*;
use std::path::PathBuf;
use weft_core::generate::Gpt2Shape;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../__test__/fixtures/hf_gpt2")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// GPT-2 as the built-in TS model builds it (names, Conv1D layouts, tied head), context `seq`.
fn gpt2(s: &Gpt2Shape, seq: usize) -> Graph {
    let c = s.dim;
    let mut b = GraphBuilder::new();
    let shape = |dims: Vec<Dim>| Shape(dims);
    let idx = b
        .input(
            "idx",
            shape(vec![Dim::Batch(1), Dim::Fixed(seq)]),
            DType::I32,
        )
        .unwrap();
    let tgt = b
        .input("targets", shape(vec![Dim::Batch(seq)]), DType::I32)
        .unwrap();
    let zeros = Init::Zeros;
    let wte = p(&mut b, "wte.weight", &[s.vocab, c], zeros.clone());
    let wpe = p(&mut b, "wpe.weight", &[seq, c], zeros.clone());
    let e = op(&mut b, Op::Embedding, &[wte, idx]);
    let mut x = op(&mut b, Op::Binary(BinaryOp::Add), &[e, wpe]);
    let ln = |b: &mut GraphBuilder, x: NodeId, name: &str| {
        let w = p(b, &format!("{name}.weight"), &[c], Init::Ones);
        let bias = p(b, &format!("{name}.bias"), &[c], Init::Zeros);
        op(b, Op::LayerNorm { eps: s.eps }, &[x, w, bias])
    };
    for i in 0..s.layers {
        let h = ln(&mut b, x, &format!("h.{i}.ln_1"));
        let qkv = linear(&mut b, h, &format!("h.{i}.attn.c_attn"), c, 3 * c);
        let a = op(&mut b, Op::CausalAttention { heads: s.heads }, &[qkv]);
        let a = linear(&mut b, a, &format!("h.{i}.attn.c_proj"), c, c);
        x = op(&mut b, Op::Binary(BinaryOp::Add), &[x, a]);
        let h = ln(&mut b, x, &format!("h.{i}.ln_2"));
        let f = linear(&mut b, h, &format!("h.{i}.mlp.c_fc"), c, 4 * c);
        let f = op(&mut b, Op::Unary(UnaryOp::Gelu), &[f]);
        let f = linear(&mut b, f, &format!("h.{i}.mlp.c_proj"), 4 * c, c);
        x = op(&mut b, Op::Binary(BinaryOp::Add), &[x, f]);
    }
    let x = ln(&mut b, x, "ln_f");
    let rows = b.reshape_dims(x, &[-1, c as i64]).unwrap();
    let x = op(&mut b, Op::Reshape { shape: rows }, &[x]);
    let mm = Op::MatMul {
        trans_a: false,
        trans_b: true,
    };
    let logits = op(&mut b, mm, &[x, wte]);
    let loss = mean_cross_entropy(&mut b, logits, tgt);
    b.output("logits", logits).unwrap();
    b.finish(loss).unwrap()
}

const FIXTURE: Gpt2Shape = Gpt2Shape {
    layers: 2,
    heads: 2,
    dim: 32,
    vocab: 96,
    positions: 32,
    eps: 1e-5,
};

/// A one-device trainer of the fixture's GPT-2 at context 32 with the HF weights (wpe sliced).
fn fixture_trainer() -> Trainer {
    let opts = serde_json::json!({"batch": 1, "seed": 0, "devices": "cpu:1", "threads": 1,
        "optimizer": {"kind": "adamw", "lr": 1e-3}});
    let mut t = Trainer::compile(
        gpt2(&FIXTURE, 32),
        TrainerOptions::from_json(&opts).unwrap(),
    )
    .unwrap();
    t.load_weights(&fixture_dir()).unwrap();
    t
}

#[test]
fn the_structure_is_read_from_the_graph() {
    let t = fixture_trainer();
    let d = t.kv_decoder().unwrap().unwrap();
    assert_eq!(d.shape(), FIXTURE);
}

#[test]
fn cached_logits_equal_a_full_window_evaluation() {
    let mut t = fixture_trainer();
    let tokens: Vec<i32> = (0..32).map(|i| (i * 11 + 4) % 96).collect();
    let batch = BTreeMap::from([
        ("idx".to_string(), HostData::I32(tokens.clone())),
        ("targets".to_string(), HostData::I32(vec![0; 32])),
    ]);
    let report = t.evaluate(&batch).unwrap();
    let (_, _, full) = report
        .outputs
        .iter()
        .find(|(n, _, _)| n == "logits")
        .unwrap();
    let full = full.as_f32().unwrap();
    let mut d = t.kv_decoder().unwrap().unwrap();
    let mut worst = 0.0f32;
    for (pos, &tok) in tokens.iter().enumerate() {
        let row = d.feed(tok as u32).unwrap();
        for (a, b) in row.iter().zip(&full[pos * 96..(pos + 1) * 96]) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(
        worst < 1e-4,
        "cached and full-window logits differ by {worst}"
    );
    assert_eq!(d.position(), 32);
    let full_err = d.feed(1).unwrap_err().to_string();
    assert!(
        full_err.contains("the key/value cache is full: the model has 32 positions"),
        "{full_err}"
    );
    d.reset();
    assert_eq!(
        d.feed(96).unwrap_err().to_string(),
        "batch: token id 96 is outside the model's vocabulary of 96 (ids 0 to 95)"
    );
}

#[test]
fn greedy_cached_decoding_equals_hugging_face_generate() {
    let t = fixture_trainer();
    let want = expected();
    let prompt = ids(&want["greedy"]["prompt"]);
    let mut d = t.kv_decoder().unwrap().unwrap();
    let mut logits = Vec::new();
    for &tok in &prompt {
        logits = d.feed(tok).unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..ids(&want["greedy"]["tokens"]).len() {
        let next = logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best })
            as u32;
        got.push(next);
        if got.len() < ids(&want["greedy"]["tokens"]).len() {
            logits = d.feed(next).unwrap();
        }
    }
    assert_eq!(got, ids(&want["greedy"]["tokens"]));
}

#[test]
fn a_model_without_gpt2_structure_says_why() {
    let t = Trainer::compile(
        model(1),
        options(1, 1, "PreferBackward", serde_json::json!({})),
    )
    .unwrap();
    let why = t.kv_decoder().unwrap().err().unwrap();
    assert_eq!(
        why,
        "the model is not a GPT-2: it has no parameter 'wte.weight'"
    );
}

#[test]
fn f16_and_bf16_files_load_widened() {
    use weft_core::checkpoint::{SafeTensors, TensorEntry, safetensors};
    use weft_core::tensor::half::narrow_one;
    let original = safetensors::read(&fixture_dir().join("model.safetensors")).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let narrow = |t: &TensorEntry| {
            let bits: Vec<u16> = t
                .data
                .as_f32()
                .unwrap()
                .iter()
                .map(|&x| narrow_one(dtype, x))
                .collect();
            let data = if dtype == DType::F16 {
                HostData::F16(bits)
            } else {
                HostData::BF16(bits)
            };
            TensorEntry::new(t.name.clone(), t.shape.clone(), data)
        };
        let file = SafeTensors {
            tensors: original.tensors.iter().map(narrow).collect(),
            metadata: Default::default(),
        };
        let path = std::env::temp_dir().join(format!(
            "weft-generate-{}-{dtype:?}.safetensors",
            std::process::id()
        ));
        safetensors::write(&path, &file.tensors, &file.metadata).unwrap();
        let mut t = fixture_trainer();
        t.load_weights(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let got = t.parameter("h.1.mlp.c_fc.weight").unwrap();
        let want = file.get("transformer.h.1.mlp.c_fc.weight").unwrap();
        let want: Vec<f32> = match &want.data {
            HostData::F16(b) => b
                .iter()
                .map(|&h| weft_core::tensor::half::f16_to_f32(h))
                .collect(),
            HostData::BF16(b) => b
                .iter()
                .map(|&h| weft_core::tensor::half::bf16_to_f32(h))
                .collect(),
            _ => unreachable!(),
        };
        assert_eq!(got.as_f32().unwrap(), want.as_slice(), "{dtype:?}");
    }
}
