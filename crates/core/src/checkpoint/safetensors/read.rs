//! Reading: split off the header, validate every entry against the buffer, decode tensor by
//! tensor. A file is read by ranges (header first, then one tensor at a time into a reused
//! buffer), so loading never holds the encoded file and the decoded tensors at once; this also
//! needs no mmap, which the WASM build (wasm32-wasip1) lacks.
//!
//! The dtype vocabulary and the layout rules come from the `safetensors` crate (the reference
//! implementation): every header is also accepted by its `Metadata` validation. weft's own checks
//! run first because they name the offending tensor, offsets and sizes; the crate's errors do not.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use safetensors::Dtype;
use serde_json::Value;

use super::{METADATA_KEY, SafeTensors, TensorEntry, err};
use crate::error::{Error, Result};
use crate::tensor::HostData;
use crate::tensor::half::{bf16_to_f32, f16_to_f32};

/// The dtypes weft loads, as stored in the file. 16-bit floats widen to f32 on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    F32,
    I32,
    F16,
    BF16,
}

impl Stored {
    fn size(self) -> usize {
        match self {
            Stored::F32 | Stored::I32 => 4,
            Stored::F16 | Stored::BF16 => 2,
        }
    }
}

/// A validated header entry.
struct Info {
    name: String,
    dtype: Stored,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// Where a file's bytes come from: a file read by ranges, or bytes already in memory.
trait Source {
    fn len(&self) -> u64;
    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<()>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        // Callers only ask for ranges inside the length they were told.
        let start = offset as usize;
        out.copy_from_slice(&self[start..start + out.len()]);
        Ok(())
    }
}

struct FileSource {
    file: File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(out)
    }
}

/// Read and fully validate a safetensors file.
pub fn read(path: &Path) -> Result<SafeTensors> {
    let io_err = |e| Error::io(path.display().to_string(), e);
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    load(&mut FileSource { file, len }, path)
}

/// Parse safetensors bytes; `path` only names the source in error messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<SafeTensors> {
    load(&mut { bytes }, path)
}

fn load(src: &mut impl Source, path: &Path) -> Result<SafeTensors> {
    let io_err = |e| Error::io(path.display().to_string(), e);
    let header = read_header(src, path)?;
    let start = 8 + header.len() as u64;
    let buf_len = usize::try_from(src.len() - start)
        .map_err(|_| err(path, "the data buffer is too large for this platform"))?;
    let (mut infos, metadata) = parse_header(&header, buf_len, path)?;
    check_tiling(&mut infos, buf_len, path)?;
    reference_check(&header, path)?;
    let mut scratch = Vec::new();
    let mut tensors = Vec::with_capacity(infos.len());
    for i in infos {
        scratch.resize(i.end - i.begin, 0);
        src.read_at(start + i.begin as u64, &mut scratch)
            .map_err(io_err)?;
        tensors.push(TensorEntry {
            data: decode(i.dtype, &scratch),
            name: i.name,
            shape: i.shape,
        });
    }
    Ok(SafeTensors { tensors, metadata })
}

fn read_header(src: &mut impl Source, path: &Path) -> Result<Vec<u8>> {
    let io_err = |e| Error::io(path.display().to_string(), e);
    let total = src.len();
    if total < 8 {
        let msg =
            format!("truncated: the file is {total} bytes, too short for the 8-byte header length");
        return Err(err(path, msg));
    }
    let mut len_bytes = [0u8; 8];
    src.read_at(0, &mut len_bytes).map_err(io_err)?;
    let n = u64::from_le_bytes(len_bytes);
    if n > total - 8 {
        let msg = format!(
            "truncated: the header length says {n} bytes but only {} bytes follow it",
            total - 8
        );
        return Err(err(path, msg));
    }
    // n <= the file length, which a successful open bounds to what the platform can address.
    let mut header = vec![0u8; n as usize];
    src.read_at(8, &mut header).map_err(io_err)?;
    Ok(header)
}

/// The reference implementation's own validation of the header, after weft's: a file weft
/// accepts must be one every other safetensors reader accepts (it also bounds the header size).
fn reference_check(header: &[u8], path: &Path) -> Result<()> {
    serde_json::from_slice::<safetensors::tensor::Metadata>(header)
        .map(|_| ())
        .map_err(|e| {
            err(
                path,
                format!("rejected by the reference safetensors checks: {e}"),
            )
        })
}

type Header = (Vec<Info>, BTreeMap<String, String>);

fn parse_header(header: &[u8], buf_len: usize, path: &Path) -> Result<Header> {
    let value: Value = serde_json::from_slice(header)
        .map_err(|e| err(path, format!("invalid JSON header: {e}")))?;
    let Value::Object(entries) = value else {
        return Err(err(path, "invalid header: the JSON is not an object"));
    };
    let mut infos = Vec::with_capacity(entries.len());
    let mut metadata = BTreeMap::new();
    for (key, entry) in &entries {
        if key == METADATA_KEY {
            metadata = parse_metadata(entry, path)?;
        } else {
            infos.push(parse_info(key, entry, buf_len, path)?);
        }
    }
    Ok((infos, metadata))
}

fn parse_metadata(entry: &Value, path: &Path) -> Result<BTreeMap<String, String>> {
    let map = match entry {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(map) => map,
        _ => return Err(err(path, "__metadata__ is not a JSON object")),
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Value::String(s) = v else {
            return Err(err(
                path,
                format!("__metadata__ entry '{k}' is not a string"),
            ));
        };
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

fn parse_info(name: &str, entry: &Value, buf_len: usize, path: &Path) -> Result<Info> {
    let bad = |what: &str| err(path, format!("tensor '{name}': {what}"));
    let dtype_str = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing or non-string \"dtype\""))?;
    let shape = usize_array(entry.get("shape"))
        .ok_or_else(|| bad("\"shape\" must be an array of non-negative integers"))?;
    let offsets = usize_array(entry.get("data_offsets"))
        .filter(|o| o.len() == 2)
        .ok_or_else(|| bad("\"data_offsets\" must be two non-negative integers [begin, end]"))?;
    let dtype = lookup_dtype(dtype_str).map_err(|m| bad(&m))?;
    let (begin, end) = (offsets[0], offsets[1]);
    if begin > end {
        return Err(bad(&format!(
            "data_offsets [{begin}, {end}] end before they begin"
        )));
    }
    if end > buf_len {
        let m = format!(
            "data_offsets [{begin}, {end}] run past the end of the {buf_len}-byte data buffer"
        );
        return Err(bad(&m));
    }
    let need = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} is too large")))?;
    if end - begin != need {
        let m = format!(
            "data_offsets [{begin}, {end}] span {} bytes but shape {shape:?} of {dtype_str} \
                needs {need}",
            end - begin
        );
        return Err(bad(&m));
    }
    Ok(Info {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

fn usize_array(v: Option<&Value>) -> Option<Vec<usize>> {
    v?.as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|n| usize::try_from(n).ok()))
        .collect()
}

/// The crate's `Dtype` names every dtype the format defines; weft loads four of them, and says
/// "unsupported" for the others rather than "unknown" (which means a corrupt or foreign file).
fn lookup_dtype(s: &str) -> std::result::Result<Stored, String> {
    match serde_json::from_value::<Dtype>(Value::String(s.to_string())) {
        Ok(Dtype::F32) => Ok(Stored::F32),
        Ok(Dtype::I32) => Ok(Stored::I32),
        Ok(Dtype::F16) => Ok(Stored::F16),
        Ok(Dtype::BF16) => Ok(Stored::BF16),
        Ok(_) => Err(format!(
            "dtype {s} is not supported (weft loads F32, I32, F16 and BF16)"
        )),
        Err(_) => Err(format!("unknown dtype '{s}'")),
    }
}

/// The reference format requires the tensors to tile the buffer: no overlap (two tensors
/// aliasing bytes), no gaps and no trailing bytes (signs of a truncated or spliced file).
/// Sorts `infos` into buffer order.
fn check_tiling(infos: &mut [Info], buf_len: usize, path: &Path) -> Result<()> {
    infos.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    let mut cursor = 0;
    let mut prev: Option<&str> = None;
    for info in infos.iter() {
        if info.begin < cursor {
            let m = format!(
                "tensors '{}' and '{}' overlap in the data buffer",
                prev.unwrap_or_default(),
                info.name
            );
            return Err(err(path, m));
        }
        if info.begin > cursor {
            let m = format!(
                "{} bytes of the data buffer before tensor '{}' belong to no tensor",
                info.begin - cursor,
                info.name
            );
            return Err(err(path, m));
        }
        cursor = info.end;
        prev = Some(&info.name);
    }
    if cursor != buf_len {
        let m = format!(
            "{} bytes at the end of the data buffer belong to no tensor",
            buf_len - cursor
        );
        return Err(err(path, m));
    }
    Ok(())
}

/// Little-endian bytes of a supported dtype to host data; 16-bit floats widen to f32.
fn decode(dtype: Stored, bytes: &[u8]) -> HostData {
    let words = || bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
    let halves = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    match dtype {
        Stored::F32 => HostData::F32(words().map(f32::from_le_bytes).collect()),
        Stored::I32 => HostData::I32(words().map(i32::from_le_bytes).collect()),
        Stored::F16 => HostData::F32(halves().map(f16_to_f32).collect()),
        Stored::BF16 => HostData::F32(halves().map(bf16_to_f32).collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::raw;
    use super::*;
    use crate::checkpoint::atomic::unique_temp_dir;

    /// Written by the reference implementation (Python safetensors 0.8.0, `safetensors.numpy.
    /// save`) from {b: f32 [[1.5,-2,0.25]], a: i32 [7,-1], h: f16 [1,-2,65504]}, metadata
    /// {step: "3"}. Note the reference orders tensors by dtype, not name.
    const REFERENCE_FILE_HEX: &str = "c8000000000000007b225f5f6d657461646174615f5f223a7b227374\
        6570223a2233227d2c2262223a7b226474797065223a22463332222c227368617065223a5b312c335d2c22\
        646174615f6f666673657473223a5b302c31325d7d2c2261223a7b226474797065223a22493332222c2273\
        68617065223a5b325d2c22646174615f6f666673657473223a5b31322c32305d7d2c2268223a7b22647479\
        7065223a22463136222c227368617065223a5b335d2c22646174615f6f666673657473223a5b32302c3236\
        5d7d7d20202020200000c03f000000c00000803e07000000ffffffff003c00c0ff7b";

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn parse_err(bytes: &[u8]) -> String {
        parse(bytes, Path::new("m.safetensors"))
            .unwrap_err()
            .to_string()
    }

    fn one_tensor(dtype: &str, shape: &str, offsets: &str) -> String {
        format!(r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
    }

    #[test]
    fn reads_a_file_written_by_the_reference_implementation() {
        let st = parse(&unhex(REFERENCE_FILE_HEX), Path::new("ref.safetensors")).unwrap();
        assert_eq!(st.names().collect::<Vec<_>>(), ["b", "a", "h"]);
        assert_eq!(st.metadata.get("step").map(String::as_str), Some("3"));
        assert_eq!(st.get("b").unwrap().shape, vec![1, 3]);
        assert_eq!(
            st.get("b").unwrap().data,
            HostData::F32(vec![1.5, -2.0, 0.25])
        );
        assert_eq!(st.get("a").unwrap().data, HostData::I32(vec![7, -1]));
        assert_eq!(
            st.get("h").unwrap().data,
            HostData::F32(vec![1.0, -2.0, 65504.0])
        );
    }

    #[test]
    fn loads_bf16_as_f32() {
        let data = [0x80, 0x3f, 0x40, 0xc0]; // bf16 1.0, -3.0
        let st = parse(
            &raw(&one_tensor("BF16", "[2]", "[0,4]"), &data),
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(st.tensors[0].data, HostData::F32(vec![1.0, -3.0]));
    }

    #[test]
    fn empty_file_with_only_metadata_is_valid() {
        let st = parse(&raw(r#"{"__metadata__":{"a":"b"}}"#, &[]), Path::new("x")).unwrap();
        assert!(st.tensors.is_empty());
        assert_eq!(st.metadata.len(), 1);
    }

    #[test]
    fn error_file_shorter_than_length_prefix() {
        assert_eq!(
            parse_err(&[1, 0, 0]),
            "checkpoint m.safetensors: truncated: the file is 3 bytes, too short for the 8-byte \
                header length"
        );
    }

    #[test]
    fn error_header_length_beyond_file() {
        let mut bytes = raw("{}", &[]);
        bytes[0] = 100;
        assert_eq!(
            parse_err(&bytes),
            "checkpoint m.safetensors: truncated: the header length says 100 bytes but only 2 \
                bytes follow it"
        );
    }

    #[test]
    fn error_invalid_json() {
        let msg = parse_err(&raw(r#"{"w": {"dtype": "F32""#, &[]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: invalid JSON header: EOF while parsing an object at line \
                1 column 21"
        );
    }

    #[test]
    fn error_header_not_an_object() {
        assert_eq!(
            parse_err(&raw("[1,2]", &[])),
            "checkpoint m.safetensors: invalid header: the JSON is not an object"
        );
    }

    #[test]
    fn error_offsets_past_buffer() {
        let msg = parse_err(&raw(&one_tensor("F32", "[4]", "[0,16]"), &[0; 8]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': data_offsets [0, 16] run past the end of the \
                8-byte data buffer"
        );
    }

    #[test]
    fn error_offsets_do_not_match_shape() {
        let msg = parse_err(&raw(&one_tensor("F32", "[2,3]", "[0,20]"), &[0; 20]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': data_offsets [0, 20] span 20 bytes but shape \
                [2, 3] of F32 needs 24"
        );
    }

    #[test]
    fn error_offsets_reversed() {
        let msg = parse_err(&raw(&one_tensor("F32", "[1]", "[8,4]"), &[0; 8]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': data_offsets [8, 4] end before they begin"
        );
    }

    #[test]
    fn error_negative_offsets() {
        let msg = parse_err(&raw(&one_tensor("F32", "[1]", "[-4,0]"), &[0; 4]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': \"data_offsets\" must be two non-negative \
                integers [begin, end]"
        );
    }

    #[test]
    fn error_negative_shape() {
        let msg = parse_err(&raw(&one_tensor("F32", "[-1]", "[0,4]"), &[0; 4]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': \"shape\" must be an array of non-negative \
                integers"
        );
    }

    #[test]
    fn error_unknown_dtype() {
        let msg = parse_err(&raw(&one_tensor("F17", "[1]", "[0,4]"), &[0; 4]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': unknown dtype 'F17'"
        );
    }

    #[test]
    fn error_known_but_unsupported_dtype() {
        let msg = parse_err(&raw(&one_tensor("F64", "[1]", "[0,8]"), &[0; 8]));
        assert_eq!(
            msg,
            "checkpoint m.safetensors: tensor 'w': dtype F64 is not supported (weft loads F32, \
                I32, F16 and BF16)"
        );
    }

    #[test]
    fn error_overlapping_tensors() {
        let h = concat!(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#,
            r#""b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        );
        assert_eq!(
            parse_err(&raw(h, &[0; 8])),
            "checkpoint m.safetensors: tensors 'a' and 'b' overlap in the data buffer"
        );
    }

    #[test]
    fn error_gap_and_trailing_bytes() {
        let gap = one_tensor("F32", "[1]", "[4,8]");
        assert_eq!(
            parse_err(&raw(&gap, &[0; 8])),
            "checkpoint m.safetensors: 4 bytes of the data buffer before tensor 'w' belong to \
                no tensor"
        );
        let trailing = one_tensor("F32", "[1]", "[0,4]");
        assert_eq!(
            parse_err(&raw(&trailing, &[0; 6])),
            "checkpoint m.safetensors: 2 bytes at the end of the data buffer belong to no tensor"
        );
    }

    #[test]
    fn error_metadata_value_not_a_string() {
        assert_eq!(
            parse_err(&raw(r#"{"__metadata__":{"step":3}}"#, &[])),
            "checkpoint m.safetensors: __metadata__ entry 'step' is not a string"
        );
    }

    #[test]
    fn error_missing_file_names_the_path() {
        let dir = unique_temp_dir("st-missing");
        let path = dir.join("nope.safetensors");
        let e = read(&path).unwrap_err();
        assert_eq!(e.code(), "WEFT_IO");
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
