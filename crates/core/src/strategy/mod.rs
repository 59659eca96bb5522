//! Strategy and cluster: strategy scopes become TaskGraphs, and a cluster of devices is sliced
//! into one VirtualDevice per TaskGraph exactly as EPL does (layouts `all`, `auto`, `specific`,
//! `aware_row`). Pure functions over plain data.
//!
//! - `cluster`: hosts x devices, global device ids, names, enumeration orders.
//! - `layout`: the layout kinds and how the config / EPL's JSON form select one.
//! - `slicing`: `slice` -> `Slicing` (a `VirtualDevice` per TaskGraph) and its checks.
//! - `aware`: the topology-aware `aware_row` host reordering and slices.
//! - `render`: the text form (golden-tested) and JSON of a `Slicing`.
//! - `scopes`: `ScopeStack`, EPL's scope rules (nesting, default strategy, auto-parallel).

mod aware;
mod cluster;
mod layout;
mod render;
mod scopes;
mod slicing;

#[cfg(test)]
mod tests;

pub use aware::aware_host_order;
pub(crate) use cluster::parse_shape;
pub use cluster::{Cluster, DeviceKind, GlobalDevice, Host, parse_cluster_shape, visible_devices};
pub use layout::{Layout, Slices, shares_all_devices};
pub use render::strategy_name;
pub use scopes::{ScopeStack, check_device_count};
pub(crate) use slicing::plural;
pub use slicing::{Slicing, VirtualDevice, slice, slice_for_config};
