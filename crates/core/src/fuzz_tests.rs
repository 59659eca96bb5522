//! Mutation fuzzing of every parser that reads bytes from outside: the safetensors reader, the
//! llm.c `.bin` reader, the config parser (JSON and `--set` text), the store's wire decoder (the
//! handshake before the token and the requests after it), the checkpoint manifest reader and
//! the `latest` pointer of a checkpoint root.
//!
//! Each target starts from valid encodings and applies random mutations (byte flips, inserted
//! and deleted runs, truncation, length fields overwritten with huge values, spliced copies),
//! then asserts the parser returns (`Ok` or its own error group) without a panic. An allocation
//! sized by an untrusted length would abort the test binary, so that is caught too.
//! Hand-written rather than proptest: mutating valid inputs reaches deep parser states that
//! random generation rarely does, it needs no new dependency, and a failing case is reproduced
//! from its printed seed. `WEFT_FUZZ_CASES` (default 2000 per target) sets the count; CI runs
//! the default, a long run by hand sets it high.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Result;

/// splitmix64: a tiny seeded generator, so every case is reproducible from its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn cases() -> u64 {
    std::env::var("WEFT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// One to four random mutations of `seed`.
fn mutate(g: &mut Gen, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + g.below(4) {
        let at = g.below(b.len() + 1);
        match g.below(6) {
            0 if !b.is_empty() => {
                let i = g.below(b.len());
                b[i] ^= 1 << g.below(8);
            }
            1 => {
                let run: Vec<u8> = (0..1 + g.below(16)).map(|_| g.next() as u8).collect();
                b.splice(at..at, run);
            }
            2 => {
                let end = (at + 1 + g.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            3 => b.truncate(at),
            4 => {
                // A length field somewhere: little-endian, huge or just past the end.
                let v = [u64::MAX, 1 << 40, 1 << 30, b.len() as u64 + 1][g.below(4)];
                let end = (at + 8).min(b.len());
                b.splice(at..end, v.to_le_bytes());
            }
            _ if !b.is_empty() => {
                let from = g.below(b.len());
                let len = g.below(b.len() - from + 1);
                let copy = b[from..from + len].to_vec();
                b.splice(at..at, copy);
            }
            _ => {}
        }
    }
    b
}

/// Run `parse` on `cases()` mutations of the seeds; every error must be in group `code`.
fn fuzz(target: &str, seeds: &[Vec<u8>], code: &str, parse: impl Fn(&[u8]) -> Result<()>) {
    let n = cases();
    for case in 0..n {
        let mut g = Gen(case ^ 0x5EED);
        let input = mutate(&mut g, &seeds[case as usize % seeds.len()]);
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&input)));
        match got {
            Ok(Ok(())) => {}
            Ok(Err(e)) => assert_eq!(e.code(), code, "{target} case {case}: {e}"),
            Err(_) => panic!("{target}: case {case} panicked on {input:?}"),
        }
    }
    eprintln!("fuzz {target}: {n} cases");
}

#[test]
fn fuzz_safetensors_reader() {
    use crate::checkpoint::TensorEntry;
    use crate::checkpoint::safetensors::{parse, to_bytes};
    use crate::exec::HostData;
    let p = Path::new("fuzz.safetensors");
    let meta = BTreeMap::from([("step".to_string(), "3".to_string())]);
    let seeds = vec![
        to_bytes(
            &[
                TensorEntry::new("w", vec![2, 3], HostData::F32(vec![0.5; 6])),
                TensorEntry::new("i", vec![4], HostData::I32(vec![1, 2, 3, 4])),
            ],
            &meta,
            p,
        )
        .unwrap(),
        to_bytes(&[], &BTreeMap::new(), p).unwrap(),
    ];
    fuzz("safetensors", &seeds, "WEFT_CHECKPOINT", |b| {
        parse(b, p).map(|_| ())
    });
}

#[test]
fn fuzz_token_bin_reader() {
    let dir = crate::checkpoint::atomic::unique_temp_dir("fuzz-bin");
    let file = dir.join("t.bin");
    crate::data::write_tokens(&file, &[1, 2, 3, 65535, 0, 7]).unwrap();
    let seeds = vec![std::fs::read(&file).unwrap()];
    let _ = std::fs::remove_dir_all(&dir);
    fuzz(".bin", &seeds, "WEFT_DATA", |b| {
        crate::data::tokens::parse(b, Path::new("t.bin")).map(|_| ())
    });
}

#[test]
fn fuzz_config_json_and_set_text() {
    use crate::config::{Config, flatten_json};
    let seeds: Vec<Vec<u8>> = [
        r#"{"pipeline": {"num_micro_batch": 4, "strategy": "PreferForward"}, "amp.loss_scale": "dynamic"}"#,
        r#"{"communication.timeout_s": 30, "zero.level": "v1", "cluster.run_visible_devices": "0,1"}"#,
        r#"{"amp": {"level": "o1", "dtype": "fp16", "loss_scale": 1024}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("config JSON", &seeds, "WEFT_CONFIG", |b| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) else {
            return Ok(());
        };
        let flat = flatten_json(&v)?;
        Config::from_sources(&flat, &[]).map(|_| ())
    });
    let sets: Vec<Vec<u8>> = [
        "pipeline.num_micro_batch=4",
        "amp.loss_scale=dynamic",
        "communication.fp16=true",
        "cluster.run_visible_devices=0,1",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("config --set", &sets, "WEFT_CONFIG", |b| {
        let text = String::from_utf8_lossy(b);
        let (key, value) = text.split_once('=').unwrap_or((&text, ""));
        let mut c = Config::default();
        c.set_text(key, value)
    });
}

#[test]
fn fuzz_checkpoint_manifest() {
    let seeds = vec![
        br#"{"format": "weft-checkpoint", "version": 1, "step": 12, "save_id": "a-1", "optimizer": "adamw", "config": {"meta": {"model": {"kind": "mlp", "sizes": [4, 3]}}}}"#.to_vec(),
    ];
    fuzz("checkpoint manifest", &seeds, "WEFT_CHECKPOINT", |b| {
        let text = String::from_utf8_lossy(b);
        crate::checkpoint::dir::parse_manifest(&text, Path::new("weft.json")).map(|_| ())
    });
}

#[test]
fn fuzz_latest_pointer() {
    let seeds = vec![b"step-00000400\n".to_vec(), b"step-00000500.3\n".to_vec()];
    fuzz("latest pointer", &seeds, "WEFT_CHECKPOINT", |b| {
        let text = String::from_utf8_lossy(b);
        if let Some(name) = crate::checkpoint::steps::parse_pointer(&text) {
            // Whatever parses names a plain entry of the root, never a path out of it.
            assert!(
                name.starts_with("step-") && !name.contains(['/', '\\']),
                "{name}"
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_store_wire() {
    use crate::collectives::tcp::fuzz::{decode_offer, decode_requests, seeds};
    let (offers, requests) = seeds();
    fuzz("store handshake", &offers, "WEFT_COLLECTIVE", decode_offer);
    fuzz(
        "store requests",
        &requests,
        "WEFT_COLLECTIVE",
        decode_requests,
    );
}
