//! Peak resident memory of loading a large safetensors checkpoint (issue 20, item 7).
//!
//! `cargo run --release -p weft-core --example checkpoint_rss -- write PATH [MB]` writes a
//! checkpoint of 50 f32 tensors totalling MB megabytes (default 500); `... -- read PATH` loads it
//! with `checkpoint::safetensors::read` in a fresh process and prints the process's peak RSS
//! (VmHWM, Linux only) next to the file size. Two processes, so the writer's memory is not
//! counted against the reader.

use std::collections::BTreeMap;
use std::path::Path;

use weft_core::checkpoint::TensorEntry;
use weft_core::checkpoint::safetensors;
use weft_core::exec::HostData;

const TENSORS: usize = 50;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn main() -> weft_core::error::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: checkpoint_rss write|read PATH [MB]");
        std::process::exit(2);
    };
    let path = Path::new(path);
    if mode == "write" {
        let mb: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500);
        let per = mb * 1024 * 1024 / 4 / TENSORS;
        let tensors: Vec<TensorEntry> = (0..TENSORS)
            .map(|i| {
                let data = (0..per).map(|j| (i * per + j) as f32 * 1e-6).collect();
                TensorEntry::new(format!("t{i:02}"), vec![per], HostData::F32(data))
            })
            .collect();
        safetensors::write(path, &tensors, &BTreeMap::new())?;
        return Ok(());
    }
    let file_mb = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    let st = safetensors::read(path)?;
    let elems: usize = st.tensors.iter().map(|t| t.data.len()).sum();
    println!(
        "loaded {} tensors, {elems} elements from a {file_mb:.0} MB file: peak RSS {:.0} MB",
        st.tensors.len(),
        peak_rss_mb()
    );
    Ok(())
}
