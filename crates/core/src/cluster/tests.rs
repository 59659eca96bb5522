//! Whole-plan tests: the Megatron-LM rows (calibration and held-out validation), memory
//! categories by hand, and plans that cannot fit.

use super::*;

/// (params B, heads, hidden, layers, TP, PP, GPUs, global batch, published TFLOP/s per GPU) from
/// Narayanan et al., SC'21, Table 1 (transcribed, not re-measured).
pub(crate) const MEGATRON: [(f64, usize, usize, usize, usize, usize, usize, usize, f64); 10] = [
    (1.7, 24, 2304, 24, 1, 1, 32, 512, 137.0),
    (3.6, 32, 3072, 30, 2, 1, 64, 512, 138.0),
    (7.5, 32, 4096, 36, 4, 1, 128, 512, 142.0),
    (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135.0),
    (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138.0),
    (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140.0),
    (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148.0),
    (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155.0),
    (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163.0),
    (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163.0),
];

/// The largest row used to calibrate; the rest are held out.
pub(crate) const CALIBRATION_MAX_B: f64 = 40.0;

pub(crate) fn megatron_plan(row: usize) -> ClusterPlan {
    let (_, heads, dim, layers, tp, pp, gpus, batch, _) = MEGATRON[row];
    let model = ModelShape::Gpt {
        layers,
        heads,
        dim,
        seq: 2048,
        vocab: 51200,
    };
    let layout = PlanLayout {
        tp,
        pp,
        global_batch: batch,
        micro_batch: 1,
        recompute: true,
        precision: "fp16".into(),
        ..PlanLayout::default()
    };
    let cluster = format!("{}x8:a100-80g", gpus / 8);
    plan(&model, &cluster, &layout, &HardwareTable::built_in().unwrap()).unwrap()
}

#[test]
fn megatron_rows_print() {
    for (i, row) in MEGATRON.iter().enumerate() {
        let p = megatron_plan(i);
        let pred = p.hardware_flops_per_gpu / 1e12;
        println!(
            "{:>7.1}B pred {:6.1} pub {:6.1} err {:+5.1}% step {:.2}s comp {:.2} comm {:.2} bubble {:.2} fits {} mem {:.1} GiB",
            row.0,
            pred,
            row.8,
            100.0 * (pred - row.8) / row.8,
            p.step_s,
            p.critical.compute_s,
            p.critical.exposed_comm_s,
            p.critical.bubble_s,
            p.fits,
            p.memory[0].total / (1u64 << 30) as f64
        );
    }
}
