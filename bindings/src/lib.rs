//! napi binding
