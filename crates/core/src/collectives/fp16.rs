//! fp16 compression for gradient all-reduce (`communication.fp16`, `communication.fp16_scale`),
//! as EPL does it: multiply by the scale, round to fp16 (halving the bytes on the wire), reduce,
//! round the result to fp16, divide by the scale. The scale lifts small gradients out of fp16's
//! subnormal range; too large a scale overflows to infinity, which the loss-scale and
//! non-finite checks then see, as they would with EPL.
//!
//! The host engines reduce the fp16-rounded values in f32 (`all_reduce_fp16`); an engine with a
//! real fp16 wire format uses `encode_f16` / `decode_f16`. Conversion is `tensor::half`'s,
//! round-to-nearest-even, so every engine rounds identically.

use super::communicator::{Communicator, ReduceOp, collective_error};
use crate::error::Result;

use crate::tensor::half::{f16_to_f32, f32_to_f16};

/// `x` as the nearest fp16 value, back in f32.
pub fn round_to_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

/// Wire encoding: `dst[i] = fp16(src[i] * scale)`.
pub fn encode_f16(src: &[f32], scale: f32, dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_f16(s * scale);
    }
}

/// Wire decoding: `dst[i] = f32(src[i]) / scale`.
pub fn decode_f16(src: &[u16], scale: f32, dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16_to_f32(s) / scale;
    }
}

/// All-reduce `buf` as an fp16 all-reduce with `scale` would: every rank's scaled payload is
/// rounded to fp16, the reduction runs in f32 in rank order, and the result is rounded to fp16
/// again before unscaling. The result is identical on every rank.
pub fn all_reduce_fp16(
    comm: &dyn Communicator,
    buf: &mut [f32],
    op: ReduceOp,
    scale: f32,
) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(collective_error(format!(
            "all_reduce_fp16 ({} f32): the fp16 scale must be a positive finite number, \
             got {scale}",
            buf.len()
        )));
    }
    to_fp16_payload(buf, scale);
    comm.all_reduce(buf, op)?;
    from_fp16_payload(buf, scale);
    Ok(())
}

/// Reduce-scatter `input` as an fp16 reduce-scatter with `scale` would (see `all_reduce_fp16`):
/// each rank's `output` is exactly its chunk of `all_reduce_fp16`'s result. `input` is left
/// scaled and rounded.
pub fn reduce_scatter_fp16(
    comm: &dyn Communicator,
    input: &mut [f32],
    output: &mut [f32],
    op: ReduceOp,
    scale: f32,
) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(collective_error(format!(
            "reduce_scatter_fp16 ({} f32): the fp16 scale must be a positive finite number, \
             got {scale}",
            input.len()
        )));
    }
    to_fp16_payload(input, scale);
    comm.reduce_scatter(input, output, op)?;
    from_fp16_payload(output, scale);
    Ok(())
}

/// One rank's contribution as the fp16 collectives send it: scaled and rounded to fp16. Apart,
/// so that a reduction done outside a communicator (the cooperative executor's) rounds alike.
pub fn to_fp16_payload(buf: &mut [f32], scale: f32) {
    buf.iter_mut().for_each(|x| *x = round_to_f16(*x * scale));
}

/// A reduced fp16 payload back to gradient values: rounded to fp16 again, then unscaled.
pub fn from_fp16_payload(buf: &mut [f32], scale: f32) {
    buf.iter_mut().for_each(|x| *x = round_to_f16(*x) / scale);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::collectives::LocalGroup;

    #[test]
    fn known_values() {
        let p2 = |e: i32| 2f32.powi(e);
        let cases: [(f32, u16); 16] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.5, 0x3800),
            (65504.0, 0x7bff),
            // Below the halfway point to 65536 stays finite; the halfway point ties to the even
            // neighbour, which is infinity.
            (65519.0, 0x7bff),
            (65520.0, 0x7c00),
            (1e10, 0x7c00),
            (0.1, 0x2e66),
            (1.0 / 3.0, 0x3555),
            (p2(-14), 0x0400),       // smallest normal
            (p2(-24), 0x0001),       // smallest subnormal
            (p2(-25), 0x0000),       // a tie between 0 and 2^-24: to even, zero
            (1.5 * p2(-25), 0x0001), // above the tie: up
            (f32::NEG_INFINITY, 0xfc00),
        ];
        for (x, h) in cases {
            assert_eq!(f32_to_f16(x), h, "f32_to_f16({x:e})");
        }
        // Ties: 1 + 2^-11 sits between 1 and 1 + 2^-10 and goes to the even 1; 1 + 3 * 2^-11
        // sits between 1 + 2^-10 (odd) and 1 + 2^-9 and goes up.
        assert_eq!(f32_to_f16(1.0 + p2(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * p2(-11)), 0x3c02);
        // Subnormal rounding carries into the smallest normal.
        assert_eq!(f32_to_f16(p2(-14) - p2(-26)), 0x0400);
        assert_eq!(f32_to_f16(f32::NAN) & 0x7c00, 0x7c00);
        assert_ne!(f32_to_f16(f32::NAN) & 0x03ff, 0);
        // f32 subnormals are far below fp16's range.
        assert_eq!(f32_to_f16(-f32::from_bits(1)), 0x8000);
    }

    #[test]
    fn every_f16_round_trips_and_midpoints_round_to_even() {
        for h in 0..=0x7bffu16 {
            for sign in [0, 0x8000] {
                let h = h | sign;
                assert_eq!(f32_to_f16(f16_to_f32(h)), h, "round trip of {h:#06x}");
            }
        }
        // Every pair of neighbours (including the last finite and infinity): the exact midpoint
        // goes to the even one, one f32 ulp either side goes to the nearer one.
        for h in 0..=0x7bffu16 {
            let (lo, hi) = (f16_to_f32(h), f16_to_f32(h + 1));
            let mid = if h == 0x7bff {
                65520.0
            } else {
                (lo + hi) / 2.0
            };
            let even = if h & 1 == 0 { h } else { h + 1 };
            assert_eq!(f32_to_f16(mid), even, "midpoint above {h:#06x}");
            assert_eq!(f32_to_f16(f32::from_bits(mid.to_bits() - 1)), h);
            assert_eq!(f32_to_f16(f32::from_bits(mid.to_bits() + 1)), h + 1);
        }
    }

    #[test]
    fn wire_encoding_applies_the_scale() {
        let mut wire = [0u16; 3];
        encode_f16(&[1.0 / 128.0, -0.5, 1e-6], 128.0, &mut wire);
        assert_eq!(wire[..2], [0x3c00, 0xd400]); // 1.0, -64.0
        let mut back = [0.0f32; 3];
        decode_f16(&wire, 128.0, &mut back);
        assert_eq!(back[..2], [1.0 / 128.0, -0.5]);
        // 1e-6 * 128 is representable only approximately; within fp16's relative precision.
        assert!((back[2] - 1e-6).abs() < 1e-6 * 1e-3);
    }

    #[test]
    fn fp16_all_reduce_matches_the_serial_reference_on_every_rank() {
        let n = 3;
        let data = |r: usize| -> Vec<f32> {
            (0..64)
                .map(|i| ((i * 7 + r * 13) % 17) as f32 * 1e-3 - 8e-3 + r as f32 * 1e-5)
                .collect()
        };
        let scale = 128.0;
        // Reference: round each scaled contribution, sum in rank order, round, unscale.
        let expected: Vec<f32> = (0..64)
            .map(|i| {
                let wire = |r: usize| round_to_f16(data(r)[i] * scale);
                let mut sum = wire(0);
                for r in 1..n {
                    sum += wire(r);
                }
                round_to_f16(sum / n as f32) / scale
            })
            .collect();
        let comms = LocalGroup::new(n, Duration::from_secs(10));
        let results: Vec<Vec<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let mut buf = data(c.global_rank());
                        all_reduce_fp16(c, &mut buf, ReduceOp::Mean, scale).unwrap();
                        buf
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            assert_eq!(bits(&r), bits(&expected));
        }
        // The compression is visible: the exact mean differs from the fp16 result somewhere.
        let exact: Vec<f32> = (0..64)
            .map(|i| (0..n).map(|r| data(r)[i]).sum::<f32>() / n as f32)
            .collect();
        assert_ne!(bits(&exact), bits(&expected));
    }

    #[test]
    fn a_bad_scale_is_refused_before_communicating() {
        let comms = LocalGroup::new(1, Duration::from_secs(1));
        let err = all_reduce_fp16(&comms[0], &mut [1.0; 4], ReduceOp::Sum, 0.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "all_reduce_fp16 (4 f32): the fp16 scale must be a positive finite number, got 0"
        );
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn reduce_scatter_fp16_gives_each_rank_its_chunk_of_the_fp16_all_reduce() {
        let n = 3;
        let data = |r: usize| -> Vec<f32> {
            (0..12)
                .map(|i| (i as f32 * 0.37 + r as f32) * 1e-3)
                .collect()
        };
        let run = |scatter: bool| -> Vec<Vec<f32>> {
            let comms = LocalGroup::new(n, Duration::from_secs(5));
            std::thread::scope(|s| {
                let hs: Vec<_> = comms
                    .into_iter()
                    .enumerate()
                    .map(|(r, c)| {
                        s.spawn(move || {
                            let mut buf = data(r);
                            if scatter {
                                let mut out = vec![0.0; 4];
                                reduce_scatter_fp16(&c, &mut buf, &mut out, ReduceOp::Sum, 1024.0)
                                    .unwrap();
                                out
                            } else {
                                all_reduce_fp16(&c, &mut buf, ReduceOp::Sum, 1024.0).unwrap();
                                buf
                            }
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            })
        };
        let (whole, chunks) = (run(false), run(true));
        for (r, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.as_slice(), &whole[0][r * 4..(r + 1) * 4]);
        }
    }
}
