//! Cut geometry shared by the tensor-parallel pass (local shapes) and the executor (cutting and
//! assembling host tensors).

/// The length an axis of `len` is padded to so that it cuts into `step` equal parts.
pub fn padded_len(len: usize, step: usize) -> usize {
    len.div_ceil(step) * step
}
