//! The 16-bit float storage types of mixed precision, as bit patterns (`u16`): conversion to
//! and from f32 (round to nearest even, NaN kept NaN), and the widening and narrowing of whole
//! buffers that let every CPU kernel run on 16-bit tensors in f32.

use super::backend::HostData;
pub use crate::checkpoint::bf16_to_f32;
use crate::collectives::{f16_to_f32, f32_to_f16};
use crate::ir::DType;
use std::borrow::Cow;

/// f32 -> bf16, rounding to nearest even; NaN stays a (quiet) NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// One 16-bit value of `dtype` as f32.
fn widen_one(dtype: DType, b: u16) -> f32 {
    if dtype == DType::BF16 {
        bf16_to_f32(b)
    } else {
        f16_to_f32(b)
    }
}

/// f32 rounded to the 16-bit `dtype`.
pub fn narrow_one(dtype: DType, x: f32) -> u16 {
    if dtype == DType::BF16 {
        f32_to_bf16(x)
    } else {
        f32_to_f16(x)
    }
}

/// Elements per parallel conversion task: conversions are memory-bound, so only large buffers
/// are worth spreading over the pool's threads.
const CHUNK: usize = 1 << 15;

/// A float buffer's values as f32: borrowed when it is f32, widened when it is 16-bit.
pub fn widen(data: &HostData) -> Option<Cow<'_, [f32]>> {
    use rayon::prelude::*;
    match data {
        HostData::F32(v) => Some(Cow::Borrowed(v)),
        HostData::BF16(v) | HostData::F16(v) => {
            let dtype = data.dtype();
            let mut out = vec![0.0f32; v.len()];
            out.par_chunks_mut(CHUNK)
                .zip(v.par_chunks(CHUNK))
                .for_each(|(o, b)| {
                    o.iter_mut()
                        .zip(b)
                        .for_each(|(o, &b)| *o = widen_one(dtype, b))
                });
            Some(Cow::Owned(out))
        }
        HostData::I32(_) => None,
    }
}

/// Overwrite a float buffer with `values`, rounding them to its type.
pub fn narrow_into(values: &[f32], out: &mut HostData) {
    use rayon::prelude::*;
    let dtype = out.dtype();
    match out {
        HostData::F32(v) => v.copy_from_slice(values),
        HostData::BF16(v) | HostData::F16(v) => v
            .par_chunks_mut(CHUNK)
            .zip(values.par_chunks(CHUNK))
            .for_each(|(o, x)| {
                o.iter_mut()
                    .zip(x)
                    .for_each(|(o, &x)| *o = narrow_one(dtype, x))
            }),
        HostData::I32(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_specials() {
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0)), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(
            bf16_to_f32(f32_to_bf16(1.0 + 3.0 / 256.0)),
            1.0 + 4.0 / 256.0
        );
        assert_eq!(bf16_to_f32(f32_to_bf16(f32::INFINITY)), f32::INFINITY);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        // bf16 keeps f32's range: 1e38 stays finite, f16 overflows to inf.
        assert!(bf16_to_f32(f32_to_bf16(1e38)).is_finite());
        assert_eq!(
            widen_one(DType::F16, narrow_one(DType::F16, 1e5)),
            f32::INFINITY
        );
    }

    #[test]
    fn widening_and_narrowing_round_trip_buffers() {
        let mut h = HostData::zeros(DType::BF16, 3);
        narrow_into(&[0.5, -2.0, 3.0], &mut h);
        assert_eq!(widen(&h).unwrap().as_ref(), &[0.5, -2.0, 3.0]);
        assert!(widen(&HostData::I32(vec![1])).is_none());
    }
}
