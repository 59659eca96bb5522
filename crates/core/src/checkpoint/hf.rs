//! Hugging Face GPT-2 checkpoints as they are: a `save_pretrained` folder (`config.json` beside
//! `model.safetensors`) or file. On load, tensor names lose the `transformer.` prefix, the
//! attention-mask buffers are set aside by name, a tied `lm_head.weight` is dropped (weft's head
//! is `wte` itself) and a `wpe` longer than the model's context is cut to it. The model's shape
//! comes from `config.json`; a value weft does not implement is an error naming it. On save,
//! `config.json` is written so `GPT2LMHeadModel.from_pretrained(dir)` loads weft's checkpoint.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::safetensors::{SafeTensors, TensorEntry};
use crate::error::{Error, Result};
use crate::generate::Gpt2Shape;
use crate::tensor::HostData;

/// The file a `--init` path names: `DIR/model.safetensors` for a directory, else the path.
pub fn weights_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        source_dir(path).join("model.safetensors")
    } else {
        path.to_path_buf()
    }
}

/// The directory whose files a directory `path` stands for: the newest save when `path` is a
/// root of weft step directories, else `path` itself (a Hugging Face or single checkpoint
/// directory).
fn source_dir(path: &Path) -> PathBuf {
    super::steps::find_latest(path).unwrap_or_else(|| path.to_path_buf())
}

/// The `config.json` of a `--init` directory, if it has one. A file given by itself takes its
/// shape from the caller (flags), even with a `config.json` beside it: a weft checkpoint's
/// `model.safetensors` has one, and its flags must keep meaning what they say.
pub fn config_path(path: &Path) -> Option<PathBuf> {
    Some(source_dir(path).join("config.json")).filter(|p| path.is_dir() && p.is_file())
}

/// What loading set aside: tensors that are not parameters, by name, each with the reason.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Adapted {
    pub skipped: Vec<String>,
}

/// Puts a Hugging Face GPT-2 file in weft's terms for a model with `expected` parameters.
pub fn adapt(
    file: &mut SafeTensors,
    expected: &[(String, Vec<usize>)],
    path: &Path,
) -> Result<Adapted> {
    let mut out = Adapted::default();
    for t in &mut file.tensors {
        if let Some(rest) = t.name.strip_prefix("transformer.") {
            t.name = rest.to_string();
        }
    }
    let (buffers, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut file.tensors)
        .into_iter()
        .partition(is_mask_buffer);
    out.skipped.extend(buffers.into_iter().map(|t| t.name));
    file.tensors = kept;
    if let Some(i) = file.tensors.iter().position(|t| t.name == "lm_head.weight") {
        let head = file.tensors.remove(i);
        if file.get("wte.weight").is_some_and(|w| w.data != head.data) {
            return Err(Error::Checkpoint {
                path: path.display().to_string(),
                message: "lm_head.weight differs from wte.weight; weft's GPT ties its head to wte (tie_word_embeddings = true)".to_string(),
            });
        }
        out.skipped.push(head.name);
    }
    let want = expected.iter().find(|(n, _)| n == "wpe.weight");
    let wpe = file.tensors.iter_mut().find(|t| t.name == "wpe.weight");
    if let (Some(want), Some(wpe)) = (want, wpe) {
        slice_positions(wpe, &want.1, path)?;
    }
    Ok(out)
}

/// GPT-2's causal-mask buffers `h.N.attn.bias` / `h.N.attn.masked_bias` (rank 4 or a scalar):
/// not parameters, since weft's attention op is causal by itself.
fn is_mask_buffer(t: &TensorEntry) -> bool {
    (t.name.ends_with(".attn.bias") && t.shape.len() == 4) || t.name.ends_with(".attn.masked_bias")
}

/// A `wpe [P, C]` with more rows than the model's `[T, C]` keeps its first T; fewer is an error.
fn slice_positions(wpe: &mut TensorEntry, want: &[usize], path: &Path) -> Result<()> {
    let (&[have, c], &[t, wc]) = (wpe.shape.as_slice(), want) else {
        return Ok(()); // a rank mismatch is check_against's to report
    };
    if c != wc || have == t {
        return Ok(());
    }
    if have < t {
        return Err(Error::Checkpoint {
            path: path.display().to_string(),
            message: format!(
                "wpe.weight has {have} positions but the model's context (--seq) is {t}; use --seq {have} or less"
            ),
        });
    }
    if let HostData::F32(v) = &mut wpe.data {
        v.truncate(t * c);
        wpe.shape = vec![t, c];
    }
    Ok(())
}

fn config_err(path: &Path, key: &str, message: String) -> Error {
    Error::config(key, format!("{}: {message}", path.display()))
}

/// The model shape from a GPT-2 `config.json`, refusing what weft's GPT does not implement.
pub fn read_config(path: &Path) -> Result<Gpt2Shape> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let cfg: Value = serde_json::from_str(&text)
        .map_err(|e| config_err(path, "config.json", format!("not valid JSON ({e})")))?;
    let num = |key: &str| -> Result<usize> {
        cfg.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| {
                config_err(
                    path,
                    key,
                    format!(
                        "'{key}' must be a positive integer, got {}",
                        show(cfg.get(key))
                    ),
                )
            })
    };
    refuse_unimplemented(&cfg, path)?;
    let dim = num("n_embd")?;
    let shape = Gpt2Shape {
        layers: num("n_layer")?,
        heads: num("n_head")?,
        dim,
        vocab: num("vocab_size")?,
        positions: num("n_positions")?,
        eps: cfg
            .get("layer_norm_epsilon")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5) as f32,
    };
    let inner = cfg.get("n_inner").filter(|v| !v.is_null());
    if let Some(inner) = inner.filter(|v| v.as_u64() != Some(4 * dim as u64)) {
        return Err(config_err(
            path,
            "n_inner",
            format!(
                "n_inner {inner} is not supported: weft's GPT-2 MLP is 4 x n_embd = {}",
                4 * dim
            ),
        ));
    }
    Ok(shape)
}

/// Config values that would change the numerics, each checked against the one weft implements.
fn refuse_unimplemented(cfg: &Value, path: &Path) -> Result<()> {
    let expect = |key: &str, ok: &[Value], default_ok: bool, what: &str| -> Result<()> {
        match cfg.get(key) {
            None if default_ok => Ok(()),
            Some(v) if ok.contains(v) => Ok(()),
            v => Err(config_err(
                path,
                key,
                format!(
                    "{key} = {} is not supported: weft implements {what}",
                    show(v)
                ),
            )),
        }
    };
    expect("model_type", &[json!("gpt2")], true, "model_type \"gpt2\"")?;
    let tanh = [json!("gelu_new"), json!("gelu_pytorch_tanh")];
    expect(
        "activation_function",
        &tanh,
        true,
        "GELU's tanh approximation (\"gelu_new\")",
    )?;
    expect(
        "scale_attn_weights",
        &[json!(true)],
        true,
        "attention scaled by 1/sqrt(head width)",
    )?;
    expect(
        "scale_attn_by_inverse_layer_idx",
        &[json!(false)],
        true,
        "no per-layer attention scaling",
    )?;
    expect(
        "add_cross_attention",
        &[json!(false)],
        true,
        "a decoder without cross-attention",
    )?;
    expect(
        "tie_word_embeddings",
        &[json!(true)],
        true,
        "a head tied to wte",
    )?;
    Ok(())
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "absent".to_string(), Value::to_string)
}

/// GPT-2's `config.json` for a model of `shape` (`n_positions` = its trained context), the
/// fields `GPT2LMHeadModel.from_pretrained` reads.
pub fn config_json(shape: &Gpt2Shape) -> Value {
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": shape.vocab,
        "n_positions": shape.positions,
        "n_ctx": shape.positions,
        "n_embd": shape.dim,
        "n_layer": shape.layers,
        "n_head": shape.heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": eps_json(shape.eps),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": true,
        "use_cache": true,
    })
}

/// An f32 epsilon as the decimal it was written as (1e-5, not 9.99999974e-6).
pub fn eps_json(eps: f32) -> f64 {
    eps.to_string().parse().unwrap_or(f64::from(eps))
}

/// Writes `dir/config.json` for `shape`, atomically.
pub fn write_config(dir: &Path, shape: &Gpt2Shape) -> Result<()> {
    let text = serde_json::to_string_pretty(&config_json(shape))
        .map_err(|e| Error::internal(e.to_string()))?;
    super::atomic::write_atomic(&dir.join("config.json"), format!("{text}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, shape: &[usize], v: f32) -> TensorEntry {
        let n = shape.iter().product();
        TensorEntry::new(name, shape.to_vec(), HostData::F32(vec![v; n]))
    }

    fn file(tensors: Vec<TensorEntry>) -> SafeTensors {
        SafeTensors {
            tensors,
            metadata: Default::default(),
        }
    }

    fn expected() -> Vec<(String, Vec<usize>)> {
        vec![
            ("wte.weight".into(), vec![4, 2]),
            ("wpe.weight".into(), vec![3, 2]),
        ]
    }

    #[test]
    fn prefix_buffers_and_a_tied_head_are_set_aside_and_wpe_is_cut() {
        let mut f = file(vec![
            entry("transformer.wte.weight", &[4, 2], 1.0),
            entry("transformer.wpe.weight", &[5, 2], 2.0),
            entry("transformer.h.0.attn.bias", &[1, 1, 5, 5], 1.0),
            entry("transformer.h.0.attn.masked_bias", &[], -1e4),
            entry("lm_head.weight", &[4, 2], 1.0),
        ]);
        let a = adapt(&mut f, &expected(), Path::new("m.safetensors")).unwrap();
        assert_eq!(
            a.skipped,
            ["h.0.attn.bias", "h.0.attn.masked_bias", "lm_head.weight"]
        );
        assert_eq!(f.names().collect::<Vec<_>>(), ["wte.weight", "wpe.weight"]);
        assert_eq!(f.get("wpe.weight").unwrap().shape, [3, 2]);
        assert_eq!(f.get("wpe.weight").unwrap().data.len(), 6);
    }

    #[test]
    fn an_untied_head_and_a_short_wpe_are_errors() {
        let mut f = file(vec![
            entry("wte.weight", &[4, 2], 1.0),
            entry("lm_head.weight", &[4, 2], 3.0),
        ]);
        let e = adapt(&mut f, &expected(), Path::new("m.safetensors")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint m.safetensors: lm_head.weight differs from wte.weight; weft's GPT ties its head to wte (tie_word_embeddings = true)"
        );
        let mut f = file(vec![entry("wpe.weight", &[2, 2], 1.0)]);
        let e = adapt(&mut f, &expected(), Path::new("m.safetensors")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint m.safetensors: wpe.weight has 2 positions but the model's context (--seq) is 3; use --seq 2 or less"
        );
    }

    fn config_with(extra: Value) -> Result<Gpt2Shape> {
        let dir = std::env::temp_dir().join(format!(
            "weft-hf-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = config_json(&Gpt2Shape {
            layers: 2,
            heads: 2,
            dim: 8,
            vocab: 16,
            positions: 12,
            eps: 1e-5,
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let path = dir.join("config.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        let r = read_config(&path).map_err(|e| {
            Error::config(
                "",
                e.to_string()
                    .replace(&path.display().to_string(), "config.json"),
            )
        });
        std::fs::remove_dir_all(&dir).ok();
        r
    }

    #[test]
    fn config_json_round_trips_and_unimplemented_values_are_named() {
        let s = config_with(json!({})).unwrap();
        assert_eq!(
            s,
            Gpt2Shape {
                layers: 2,
                heads: 2,
                dim: 8,
                vocab: 16,
                positions: 12,
                eps: 1e-5
            }
        );
        let e = config_with(json!({"activation_function": "gelu"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: activation_function = \"gelu\" is not supported: weft implements GELU's tanh approximation (\"gelu_new\")"
        );
        let e = config_with(json!({"scale_attn_by_inverse_layer_idx": true})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: scale_attn_by_inverse_layer_idx = true is not supported: weft implements no per-layer attention scaling"
        );
        let e = config_with(json!({"n_inner": 10})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: n_inner 10 is not supported: weft's GPT-2 MLP is 4 x n_embd = 32"
        );
        let e = config_with(json!({"n_layer": "two"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: 'n_layer' must be a positive integer, got \"two\""
        );
    }
}
