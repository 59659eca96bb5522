//! Tests of the strategy module that span its files: golden slicings, the exact message of
//! every slicing error, and the scope rules.

mod golden;
mod scopes;
mod slicing_errors;

use crate::ir::{Strategy, TaskGraph};

pub(super) fn replicate(name: &str, device_count: usize) -> TaskGraph {
    TaskGraph {
        name: name.into(),
        strategy: Strategy::Replicate,
        device_count,
    }
}

pub(super) fn split(name: &str, device_count: usize) -> TaskGraph {
    TaskGraph {
        name: name.into(),
        strategy: Strategy::Split,
        device_count,
    }
}
