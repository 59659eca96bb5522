//! TensorBoard event files. The format is TFRecord framing (length, masked CRC-32C of the
//! length, data, masked CRC-32C of the data) around `tensorflow.Event` protobufs. The protobufs
//! are declared by hand with `prost`'s derive (the few fields we write, with TensorFlow's tag
//! numbers), so no `protoc` or generated code is needed; CRC-32C is the `crc32c` crate
//! (hardware-accelerated where available, portable elsewhere, so the WASM build writes the
//! same files). TensorBoard's own reader is the test (`__test__/tensorboard.spec.ts`).

use crate::error::{Error, Result};
use prost::Message;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `tensorflow.Event` (event.proto): the fields weft writes.
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary` (summary.proto).
#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

/// `tensorflow.Summary.Value`: a tag and a simple value or a histogram.
#[derive(Clone, PartialEq, Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Kind", tags = "2, 5")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "5")]
    Histo(Histogram),
}

/// `tensorflow.HistogramProto`: counts of values below each bucket's upper limit.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// Buckets of a histogram: equal widths between the smallest and the largest value.
const BUCKETS: usize = 30;

impl Histogram {
    /// The histogram of the finite `values` (TensorBoard's buckets need finite limits; the
    /// non-finite ones are left out of every field).
    pub fn of(values: &[f32]) -> Histogram {
        let finite = || {
            values
                .iter()
                .map(|&v| f64::from(v))
                .filter(|v| v.is_finite())
        };
        let min = finite().fold(f64::INFINITY, f64::min);
        let max = finite().fold(f64::NEG_INFINITY, f64::max);
        let (min, max) = if min <= max { (min, max) } else { (0.0, 0.0) };
        let width = ((max - min) / BUCKETS as f64).max(f64::MIN_POSITIVE);
        let bucket_limit: Vec<f64> = (1..=BUCKETS)
            .map(|i| {
                if i == BUCKETS {
                    max
                } else {
                    min + width * i as f64
                }
            })
            .collect();
        let mut bucket = vec![0.0; BUCKETS];
        for v in finite() {
            let i = (((v - min) / width) as usize).min(BUCKETS - 1);
            bucket[i] += 1.0;
        }
        Histogram {
            min,
            max,
            num: finite().count() as f64,
            sum: finite().sum(),
            sum_squares: finite().map(|v| v * v).sum(),
            bucket_limit,
            bucket,
        }
    }
}

/// TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: `u64` length, masked CRC of the length, the data, masked CRC of the data (all
/// little-endian).
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// An event file being written: `<dir>/events.out.tfevents.<seconds>.weft.<pid>`.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `dir` (and its parents) and a new event file in it, starting with the
    /// `brain.Event:2` version record TensorBoard expects first.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let io = |e| Error::io(dir.display().to_string(), e);
        fs::create_dir_all(dir).map_err(io)?;
        let name = format!(
            "events.out.tfevents.{}.weft.{}",
            now() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let mut w = EventWriter {
            out: BufWriter::new(file),
            path,
        };
        w.write(0, What::FileVersion("brain.Event:2".into()))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars of one step, one `Summary.Value` each.
    pub fn scalars(&mut self, step: u64, values: &[(String, f32)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| Value {
                tag: tag.clone(),
                kind: Some(Kind::SimpleValue(*v)),
            })
            .collect();
        self.write(step, What::Summary(Summary { value }))
    }

    /// A histogram of `values` at `step`.
    pub fn histogram(&mut self, step: u64, tag: &str, values: &[f32]) -> Result<()> {
        let value = vec![Value {
            tag: tag.to_string(),
            kind: Some(Kind::Histo(Histogram::of(values))),
        }];
        self.write(step, What::Summary(Summary { value }))
    }

    /// Pushes buffered records to the file (TensorBoard reads what is there while it grows).
    pub fn flush(&mut self) -> Result<()> {
        let path = self.path.display().to_string();
        self.out.flush().map_err(|e| Error::io(path, e))
    }

    fn write(&mut self, step: u64, what: What) -> Result<()> {
        let event = Event {
            wall_time: now(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(what),
        };
        let bytes = record(&event.encode_to_vec());
        let path = self.path.display().to_string();
        self.out.write_all(&bytes).map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_frames_data_with_tensorflow_s_masked_crc32c() {
        // CRC-32C("123456789") = 0xE3069283 (the standard check value), masked as TFRecord does.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
        let r = record(b"abc");
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[8..12], &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(&r[15..], &masked_crc32c(b"abc").to_le_bytes());
    }

    #[test]
    fn scalars_decode_back_as_tensorflow_events() {
        let dir = crate::checkpoint::atomic::unique_temp_dir("events");
        let mut w = EventWriter::create(&dir.join("logs")).unwrap();
        w.scalars(7, &[("train/loss".into(), 2.5)]).unwrap();
        w.flush().unwrap();
        let bytes = fs::read(w.path()).unwrap();
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            events.push(Event::decode(&bytes[at + 12..at + 12 + len]).unwrap());
            at += 16 + len;
        }
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        assert_eq!(events[1].step, 7);
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("not a summary")
        };
        assert_eq!(s.value[0].tag, "train/loss");
        assert_eq!(s.value[0].kind, Some(Kind::SimpleValue(2.5)));
        let h = Histogram::of(&[1.0, 2.0, 3.0, f32::NAN]);
        assert_eq!(
            (h.min, h.max, h.num, h.sum, h.sum_squares),
            (1.0, 3.0, 3.0, 6.0, 14.0)
        );
        assert_eq!(h.bucket.iter().sum::<f64>(), 3.0);
    }
}
