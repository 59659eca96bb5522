//! Graph-to-graph passes. Each is `Graph -> Result<Graph>` and the pass manager runs
//! `verify()` after every one, so a broken pass is caught at the pass, not at run time.

mod amp;
mod auto_stage;
mod recompute;
mod resolve_batch;
mod stages;
mod tensor_split;

pub use crate::ir::StageMap;
pub use amp::{
    AmpReport, Precision, mixed_precision, precision_of, recast_parameters, scale_loss_seed,
};
pub use auto_stage::{
    AutoStageReport, StageCost, StagePolicy, auto_stages, block_ends, equal_op_count_stages,
    sqrt_segment_ends, stage_costs,
};
pub use recompute::{live_across, recompute};
pub use resolve_batch::resolve_batch;
pub use stages::assign_stages;
pub use tensor_split::{SplitOptions, is_shard, tensor_split, tp_width};

use crate::error::Result;
use crate::ir::Graph;

/// Run one pass and verify its result.
pub fn run_pass(graph: Graph, pass: impl FnOnce(Graph) -> Result<Graph>) -> Result<Graph> {
    let out = pass(graph)?;
    out.verify()?;
    Ok(out)
}
