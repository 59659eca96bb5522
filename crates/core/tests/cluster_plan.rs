//! Cluster planning at scale from shapes alone (issue 22 item 1, issue 15 item 7): a
//! 1-trillion-parameter GPT on 3072 A100s plans with a bounded number of bytes allocated. The
//! bound is counted by this binary's global allocator (deterministic, unlike RSS); the time is
//! printed, never asserted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use weft_core::cluster::{HardwareTable, ModelShape, PlanLayout, plan};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BOUND: usize = 256 << 20;

#[test]
fn a_trillion_parameter_gpt_plans_on_384x8_a100s_within_a_memory_bound() {
    let model = ModelShape::Gpt {
        layers: 128,
        heads: 160,
        dim: 25600,
        seq: 2048,
        vocab: 51200,
    };
    let layout = PlanLayout {
        tp: 8,
        pp: 64,
        global_batch: 3072,
        micro_batch: 1,
        recompute: true,
        precision: "bf16".into(),
        ..PlanLayout::default()
    };
    let table = HardwareTable::built_in().unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let start = Instant::now();
    let p = plan(&model, "384x8:a100-80g", &layout, &table).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    println!(
        "1T GPT on 384x8:a100-80g: planned in {:.2} s, peak {:.1} MiB allocated; step {:.1} s, \
         {:.0} TFLOP/s per GPU, MFU {:.1}%",
        start.elapsed().as_secs_f64(),
        peak as f64 / (1 << 20) as f64,
        p.step_s,
        p.hardware_flops_per_gpu / 1e12,
        100.0 * p.mfu
    );
    assert!(peak < BOUND, "planning allocated {peak} bytes at its peak");
    assert!(
        (p.parameters / 1e12 - 1.008).abs() < 0.01,
        "{}",
        p.parameters
    );
    assert_eq!(
        (p.devices, p.layout.dp, p.layout.micro_batches),
        (3072, 6, 512)
    );
    assert!(p.fits, "{:?}", p.overflow);
    // The bubble comes from the simulated schedule; with uniform stages it is close to, but not
    // exactly, the closed form (the last stage also computes the logits).
    assert!(p.bubble_fraction > 0.0 && p.closed_form_bubble > 0.0);
}
