//! weft-node: the napi-rs binding, the only crate that knows about JavaScript. Each module binds
//! one core area; `convert` is the one place JS values become core values, `error` the one
//! place core errors become JS errors.

#![cfg_attr(test, allow(dead_code))] // the #[napi] items are only reachable from JS

#[macro_use]
extern crate napi_derive;

mod bench;
mod checkpoints;
mod cluster;
mod config;
mod convert;
mod data;
mod datasets;
mod error;
mod generate;
mod model;
mod summary;
mod trainer;
#[cfg(all(target_os = "wasi", not(target_feature = "atomics")))]
mod wasi_threads;
