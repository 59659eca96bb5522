//! The bottom layer: tensor basics every other module may use and that use nothing above
//! `error`: element types, host buffers, 16-bit float conversion (the `half` crate) and the
//! geometry of cutting an axis into equal parts.

mod dtype;
mod geometry;
pub mod half;
mod host;

pub use dtype::DType;
pub use geometry::padded_len;
pub use host::{AsHostView, HostData, HostView};
