//! Writing: deterministic layout (sorted by name), reference-style padding, atomic replace. The
//! header is built from the `safetensors` crate's types and checked by its layout rules.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{METADATA_KEY, TensorEntry, err};
use crate::checkpoint::atomic;
use crate::error::Result;
use crate::tensor::HostData;

/// Write a safetensors file atomically (temp file, fsync, rename); a crash never leaves a
/// half-written file at `path`.
pub fn write(
    path: &Path,
    tensors: &[TensorEntry],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = to_bytes(tensors, metadata, path)?;
    atomic::write_atomic(path, &bytes)
}

/// Serialize to safetensors bytes. Tensors are laid out and listed sorted by name, so the same
/// tensors always give the same bytes; `path` only names the target in error messages.
pub fn to_bytes(
    tensors: &[TensorEntry],
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut sorted: Vec<&TensorEntry> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    check_writable(&sorted, path)?;
    let mut header = build_header(&sorted, metadata, path)?;
    // The reference pads with spaces to 8 bytes so the buffer starts aligned for mmap readers.
    header.extend(std::iter::repeat_n(b' ', (8 - header.len() % 8) % 8));
    let data_len: usize = sorted.iter().map(|t| t.data.size_bytes()).sum();
    let mut out = Vec::with_capacity(8 + header.len() + data_len);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for t in sorted {
        match &t.data {
            HostData::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            HostData::I32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            HostData::BF16(v) | HostData::F16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
    Ok(out)
}

/// Refuse what would produce an unreadable or ambiguous file. `sorted` is sorted by name.
fn check_writable(sorted: &[&TensorEntry], path: &Path) -> Result<()> {
    for (i, t) in sorted.iter().enumerate() {
        if t.name.is_empty() || t.name == METADATA_KEY {
            return Err(err(
                path,
                format!("cannot write a tensor named '{}'", t.name),
            ));
        }
        if i > 0 && sorted[i - 1].name == t.name {
            return Err(err(path, format!("tensor '{}' is given twice", t.name)));
        }
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if numel != Some(t.data.len()) {
            let m = format!(
                "tensor '{}': shape {:?} does not hold its {} elements",
                t.name,
                t.shape,
                t.data.len()
            );
            return Err(err(path, m));
        }
    }
    Ok(())
}

/// The header as the format defines it: `__metadata__` first (sorted, so the bytes are
/// reproducible; the crate's own serializer keeps metadata in a `HashMap`, whose order varies
/// between runs), then one `TensorInfo` per tensor in buffer order.
struct Header<'a> {
    metadata: &'a BTreeMap<String, String>,
    tensors: Vec<(&'a str, TensorInfo)>,
}

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.metadata.is_empty() {
            map.serialize_entry(METADATA_KEY, self.metadata)?;
        }
        for (name, info) in &self.tensors {
            map.serialize_entry(name, info)?;
        }
        map.end()
    }
}

fn build_header(
    sorted: &[&TensorEntry],
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut offset = 0;
    let tensors: Vec<(&str, TensorInfo)> = sorted
        .iter()
        .map(|t| {
            let dtype = match t.data {
                HostData::F32(_) => Dtype::F32,
                HostData::I32(_) => Dtype::I32,
                HostData::BF16(_) => Dtype::BF16,
                HostData::F16(_) => Dtype::F16,
            };
            let end = offset + t.data.size_bytes();
            let info = TensorInfo {
                dtype,
                shape: t.shape.clone(),
                data_offsets: (offset, end),
            };
            offset = end;
            (t.name.as_str(), info)
        })
        .collect();
    // The reference implementation's layout rules, applied to what weft is about to write.
    let named = tensors.iter().map(|(n, i)| (n.to_string(), i.clone()));
    Metadata::new(None, named.collect()).map_err(|e| {
        err(
            path,
            format!("the reference safetensors checks refuse it: {e}"),
        )
    })?;
    let header = Header { metadata, tensors };
    serde_json::to_vec(&header).map_err(|e| err(path, format!("cannot encode the header: {e}")))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::{raw, read};
    use super::*;
    use crate::checkpoint::atomic::unique_temp_dir;

    fn sample() -> Vec<TensorEntry> {
        vec![
            TensorEntry::new(
                "wte.weight",
                vec![2, 3],
                HostData::F32(vec![1.0, -2.5, 3.0, 0.0, 1e-8, -0.0]),
            ),
            TensorEntry::new(
                "h.0.ln_1.bias",
                vec![3],
                HostData::F32(vec![0.5, 0.25, f32::MAX]),
            ),
            TensorEntry::new(
                "idx",
                vec![2, 2],
                HostData::I32(vec![0, -1, i32::MAX, i32::MIN]),
            ),
            TensorEntry::new("scalar", vec![], HostData::F32(vec![42.0])),
            TensorEntry::new("empty", vec![0, 4], HostData::F32(vec![])),
        ]
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = unique_temp_dir("st-roundtrip");
        let path = dir.join("model.safetensors");
        let meta = BTreeMap::from([("step".to_string(), "7".to_string())]);
        write(&path, &sample(), &meta).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.metadata, meta);
        let mut want = sample();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back.tensors, want);
        assert_eq!(back.get("idx").unwrap().shape, vec![2, 2]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writes_the_exact_reference_layout() {
        let t = [
            TensorEntry::new("b", vec![1], HostData::I32(vec![-1])),
            TensorEntry::new("a", vec![2], HostData::F32(vec![1.0, 2.0])),
        ];
        let meta = BTreeMap::from([("k".to_string(), "v\"q".to_string())]);
        let bytes = to_bytes(&t, &meta, Path::new("x")).unwrap();
        let header = concat!(
            r#"{"__metadata__":{"k":"v\"q"},"#,
            r#""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#,
            r#""b":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}}"#,
        );
        let padded = format!("{header}{}", " ".repeat((8 - header.len() % 8) % 8));
        assert_eq!(padded.len() % 8, 0);
        let mut want = raw(&padded, &[0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
        want.extend_from_slice(&[0xff; 4]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn write_rejects_shape_data_mismatch_and_duplicates() {
        let bad = [TensorEntry::new(
            "w",
            vec![2, 3],
            HostData::F32(vec![0.0; 5]),
        )];
        let e = to_bytes(&bad, &BTreeMap::new(), Path::new("out.safetensors")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint out.safetensors: tensor 'w': shape [2, 3] does not hold its 5 elements"
        );
        let dup = [
            TensorEntry::new("w", vec![1], HostData::F32(vec![0.0])),
            TensorEntry::new("w", vec![1], HostData::I32(vec![0])),
        ];
        let e = to_bytes(&dup, &BTreeMap::new(), Path::new("out.safetensors")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "checkpoint out.safetensors: tensor 'w' is given twice"
        );
    }
}
