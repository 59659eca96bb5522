//! Summaries for TensorBoard (EPL's `update_summaries` ends in TensorBoard event files):
//! `events.rs` writes scalars and histograms as TensorBoard's `Event` protobufs in TFRecord
//! framing.

mod events;

pub use events::{EventWriter, Histogram, masked_crc32c, record};
