//! The `half` crate against the bit-manipulation conversions weft used before it (kept here
//! verbatim, test-only): every 16-bit pattern, and f32 values at every exponent with the
//! mantissas where rounding decides (ties, one ulp either side, all ones), must convert to the
//! same bits. The one allowed difference: widening a signalling NaN gives a quiet NaN (the old
//! widenings kept the quiet bit as it was); sign and payload still agree.

use super::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

fn old_f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match (exp, mant) {
        (0, 0) => f32::from_bits(sign),
        (0, _) => {
            let mag = mant as f32 * (1.0 / 16_777_216.0);
            if sign != 0 { -mag } else { mag }
        }
        (0x1f, _) => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

fn old_bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

fn old_f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

fn old_f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x007f_ffff;
    if exp == 0xff {
        let nan = if mant != 0 {
            0x0200 | (mant >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 112;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let full = mant | 0x0080_0000;
        return sign | old_round_shift(full, (14 - e) as u32) as u16;
    }
    let h = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    sign | old_round_bits(h, rem, 0x1000) as u16
}

fn old_round_shift(value: u32, shift: u32) -> u32 {
    let rem = value & ((1 << shift) - 1);
    old_round_bits(value >> shift, rem, 1 << (shift - 1))
}

fn old_round_bits(kept: u32, rem: u32, half: u32) -> u32 {
    if rem > half || (rem == half && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    }
}

/// f32 bits equal, or both NaN with the same sign and the same payload apart from the quiet bit.
fn same_f32(new: f32, old: f32) -> bool {
    const QUIET: u32 = 0x0040_0000;
    new.to_bits() == old.to_bits()
        || (new.is_nan() && old.is_nan() && (new.to_bits() | QUIET) == (old.to_bits() | QUIET))
}

#[test]
fn widening_matches_the_old_conversions_on_every_16_bit_pattern() {
    for h in 0..=u16::MAX {
        let (new, old) = (f16_to_f32(h), old_f16_to_f32(h));
        assert!(same_f32(new, old), "f16 {h:#06x}: {new:e} vs {old:e}");
        let (new, old) = (bf16_to_f32(h), old_bf16_to_f32(h));
        assert!(same_f32(new, old), "bf16 {h:#06x}: {new:e} vs {old:e}");
    }
}

/// f32 values where a 16-bit rounding decides: for each sign and exponent, mantissas at and
/// around the tie points of f16's normal (13 dropped bits) and subnormal (14 to 24) ranges and
/// of bf16 (16 dropped bits), plus zero, one and all-ones mantissas (NaN payloads included).
fn edge_f32s() -> Vec<f32> {
    let mut mants = vec![0u32, 1, 2, 0x7f_ffff, 0x40_0000, 0x7f_e000, 0x7f_f000];
    for shift in 12..=23 {
        let tie = 1u32 << shift;
        for base in [0, tie, 2 * tie, 3 * tie] {
            for d in [-1i64, 0, 1] {
                let m = i64::from(base) + d;
                if (0..=0x7f_ffff).contains(&m) {
                    mants.push(m as u32);
                }
            }
        }
    }
    let mut out = Vec::new();
    for sign in [0u32, 1 << 31] {
        for exp in 0..=0xffu32 {
            out.extend(
                mants
                    .iter()
                    .map(|&m| f32::from_bits(sign | (exp << 23) | m)),
            );
        }
    }
    out
}

#[test]
fn narrowing_matches_the_old_conversions_on_edge_f32_values() {
    let values = edge_f32s();
    assert!(values.len() > 20_000, "{}", values.len());
    for x in values {
        assert_eq!(
            f32_to_f16(x),
            old_f32_to_f16(x),
            "f16 of {:#010x}",
            x.to_bits()
        );
        assert_eq!(
            f32_to_bf16(x),
            old_f32_to_bf16(x),
            "bf16 of {:#010x}",
            x.to_bits()
        );
    }
}

#[test]
fn narrowing_matches_on_every_widened_16_bit_pattern_and_its_neighbours() {
    for h in 0..=u16::MAX {
        for x in [f16_to_f32(h), bf16_to_f32(h)] {
            for bits in [
                x.to_bits().wrapping_sub(1),
                x.to_bits(),
                x.to_bits().wrapping_add(1),
            ] {
                let x = f32::from_bits(bits);
                assert_eq!(f32_to_f16(x), old_f32_to_f16(x), "f16 of {bits:#010x}");
                assert_eq!(f32_to_bf16(x), old_f32_to_bf16(x), "bf16 of {bits:#010x}");
            }
        }
    }
}
