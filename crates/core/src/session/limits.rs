//! Up-front checks of the sizes a user chose, before `compile` allocates anything: each
//! parameter and the model's parameters together, and each batch input, against this host's
//! memory (`resource::host_memory`). These are lower bounds of what training needs (gradients,
//! optimizer state and activations come on top), so a run refused here could never have run.

use super::trainer::InputSpec;
use crate::error::Result;
use crate::ir::Graph;
use crate::resource::{bytes_of, check_bytes, host_memory};

const HOST: &str = "this host's memory";

/// Refuse a model or batch whose parameters or inputs alone exceed the host's memory.
pub(super) fn check_sizes(model: &Graph, inputs: &[InputSpec]) -> Result<()> {
    let Some(limit) = host_memory() else {
        return Ok(());
    };
    let mut total: u128 = 0;
    for (id, name) in model.parameters() {
        let n = model.node(id);
        let dims: Vec<usize> = n.shape.dims().iter().map(|d| d.resolve(1)).collect();
        let bytes = bytes_of(&dims, n.dtype.size_bytes());
        let what = format!("parameter '{name}' {dims:?} {}", n.dtype.name());
        check_bytes(&what, bytes, limit, HOST)?;
        total = total.saturating_add(bytes);
    }
    check_bytes("the model's parameters", total, limit, HOST)?;
    for spec in inputs {
        let bytes = bytes_of(&spec.dims, spec.dtype.size_bytes());
        let what = format!(
            "batch input '{}' {:?} {}",
            spec.name,
            spec.dims,
            spec.dtype.name()
        );
        check_bytes(&what, bytes, limit, HOST)?;
    }
    Ok(())
}
