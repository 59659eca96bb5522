//! Cluster planning: `weft plan --cluster NODESxGPUS:KIND` and `weft.plan(model, { cluster })`.
//! JSON in, JSON out; every check is the core's.

use crate::error::{self as js, guard};

/// The plan of `modelJson` (`{kind: 'gpt', layers, heads, dim, seq, vocab}` or `{kind: 'mlp',
/// sizes}`) on `cluster` with `layoutJson`; `hardwareJson` (from `hardwareSource`) overrides the
/// built-in hardware table. Returns the plan as JSON text.
#[napi]
pub fn plan_cluster(
    model_json: String,
    cluster: String,
    layout_json: String,
    hardware_json: Option<String>,
    hardware_source: Option<String>,
) -> js::Result<String> {
    guard(|| {
        let source = hardware_source.as_deref().unwrap_or("the hardware JSON");
        let hardware = hardware_json.as_deref().map(|text| (text, source));
        let plan = weft_core::cluster::plan_json(&model_json, &cluster, &layout_json, hardware)?;
        Ok(plan.to_string())
    })
}
