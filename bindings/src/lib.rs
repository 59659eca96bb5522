//! weft-node: the napi-rs binding, the only crate that knows about JavaScript. Each module binds
//! one core area; `convert` is the one place JS values become core values, `error` the one
//! place core errors become JS errors.

#[macro_use]
extern crate napi_derive;

mod config;
mod convert;
mod data;
mod error;
mod model;
mod trainer;
