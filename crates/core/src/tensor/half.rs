//! The 16-bit float storage types of mixed precision, as bit patterns (`u16`), converted by the
//! `half` crate: round to nearest even, NaN kept NaN (quiet), exact widening. Also the widening
//! and narrowing of whole buffers that let every CPU kernel run on 16-bit tensors in f32.
//! `legacy_tests` pins the crate to weft's earlier hand-written conversions, bit for bit.

use std::borrow::Cow;

use super::{DType, HostData};

/// IEEE 754 binary16 -> f32, exact (a signalling NaN comes back quiet).
pub fn f16_to_f32(h: u16) -> f32 {
    ::half::f16::from_bits(h).to_f32()
}

/// f32 -> IEEE 754 binary16, rounding to nearest even. Overflow gives infinity, values below
/// half the smallest subnormal a signed zero, NaN a quiet NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    ::half::f16::from_f32(x).to_bits()
}

/// bfloat16 -> f32: bf16 is the top half of an f32, so widening is exact (a signalling NaN
/// comes back quiet).
pub fn bf16_to_f32(b: u16) -> f32 {
    ::half::bf16::from_bits(b).to_f32()
}

/// f32 -> bf16, rounding to nearest even; NaN stays a (quiet) NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    ::half::bf16::from_f32(x).to_bits()
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
#[path = "half_legacy_tests.rs"]
mod legacy_tests;

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

    /// Reference decoding from the format's definition, in f64, independent of the bit tricks.
    fn f16_reference(h: u16) -> f64 {
        let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let mant = f64::from(h & 0x3ff);
        match exp {
            0 => sign * mant * 2f64.powi(-24),
            0x1f if mant == 0.0 => sign * f64::INFINITY,
            0x1f => f64::NAN,
            _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn f16_matches_reference_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let got = f16_to_f32(h);
            let want = f16_reference(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), h >> 15 == 1, "{h:#06x}");
            }
        }
    }

    #[test]
    fn bf16_known_values() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
        assert_eq!(bf16_to_f32(0x3e20), 0.156_25);
        assert_eq!(bf16_to_f32(0x7f80), f32::INFINITY);
        assert!(bf16_to_f32(0x7fc0).is_nan());
        assert_eq!(bf16_to_f32(0x0001), f32::from_bits(0x0001_0000));
    }
}
