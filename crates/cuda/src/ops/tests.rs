//! The host side of the launches, checked without a GPU: the index plans and cuBLAS arguments
//! this module computes are run through CPU transcriptions of the kernels' loops (and of
//! cuBLAS's column-major strided-batched gemm), and the results must equal the CPU backend's.
//! A wrong stride, offset, leading dimension or operand swap fails here, in CI.

use super::Dims;
use super::matmul::Geom;
use super::shape::{Copy, plan};
use super::tensor::{broadcast_strides, sum_to_dims};
use weft_core::exec::{Backend, CpuBackend, HostData, KernelCtx, TensorRef};
use weft_core::ir::{BinaryOp, DType, Op, Shape, TensorType, infer};
use weft_core::rng;

pub(super) fn data(seed: u64, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n as u64)
        .map(|i| rng::uniform(seed, 3, i) * 4.0 - 2.0)
        .collect()
}

/// The CPU backend's result of `op` on f32 inputs, and its shape.
pub(super) fn cpu(op: &Op, inputs: &[(Vec<usize>, Vec<f32>)]) -> (Vec<usize>, Vec<f32>) {
    let b = CpuBackend::new(1);
    let bufs: Vec<HostData> = inputs
        .iter()
        .map(|(_, d)| HostData::F32(d.clone()))
        .collect();
    let types: Vec<TensorType> = inputs
        .iter()
        .map(|(s, _)| TensorType {
            shape: Shape::fixed(s),
            dtype: DType::F32,
        })
        .collect();
    let shape = infer(op, &types).unwrap().shape.concrete().unwrap();
    let refs: Vec<TensorRef<'_, HostData>> = bufs
        .iter()
        .zip(inputs)
        .map(|(buf, (s, _))| TensorRef {
            buf,
            shape: s,
            dtype: DType::F32,
        })
        .collect();
    let mut out = b.alloc(DType::F32, shape.iter().product()).unwrap();
    b.execute(op, &refs, &mut out, &shape, &KernelCtx::default())
        .unwrap();
    (shape, out.as_f32().unwrap().to_vec())
}

/// shape.cu's `strided_copy`, transcribed.
fn strided_copy(x: &[f32], c: &Copy, y: &mut [f32]) {
    let n: usize = c.dims.iter().product();
    for i in 0..n {
        let (mut rem, mut ix, mut iy) = (i as i64, c.x_off, c.y_off);
        for d in (0..c.dims.len()).rev() {
            let k = rem % c.dims[d] as i64;
            rem /= c.dims[d] as i64;
            ix += k * c.xs.0[d];
            iy += k * c.ys.0[d];
        }
        y[iy as usize] = x[ix as usize];
    }
}

#[test]
fn copy_plans_reproduce_every_data_movement_op() {
    let x = (vec![2, 3, 4], data(1, &[2, 3, 4]));
    let part = (vec![2, 1, 4], data(2, &[2, 1, 4]));
    let cases = [
        (
            Op::Reshape {
                shape: Shape::fixed(&[6, 4]),
            },
            vec![x.clone()],
        ),
        (
            Op::Permute {
                perm: vec![2, 0, 1],
            },
            vec![x.clone()],
        ),
        (
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3,
            },
            vec![x.clone()],
        ),
        (
            Op::SliceBackward {
                axis: 2,
                start: 1,
                len: 6,
            },
            vec![x.clone()],
        ),
        (
            Op::Concat { axis: 1 },
            vec![x.clone(), part.clone(), x.clone()],
        ),
        (
            Op::Expand {
                shape: Shape::fixed(&[2, 3, 4]),
            },
            vec![(vec![3, 1], data(3, &[3, 1]))],
        ),
    ];
    for (op, inputs) in cases {
        let (shape, want) = cpu(&op, &inputs);
        let shapes: Vec<&[usize]> = inputs.iter().map(|(s, _)| s.as_slice()).collect();
        let mut got = vec![0.0; want.len()];
        for c in plan(&op, &shapes, &shape).unwrap() {
            strided_copy(&inputs[c.input].1, &c, &mut got);
        }
        assert_eq!(got, want, "{}", op.name());
    }
}

#[test]
fn broadcast_strides_and_sum_to_dims_match_the_cpu() {
    let (a, b) = (
        (vec![2, 3, 4], data(4, &[2, 3, 4])),
        (vec![3, 1], data(5, &[3, 1])),
    );
    for inputs in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let op = Op::Binary(BinaryOp::Sub);
        let (shape, want) = cpu(&op, &inputs);
        let sa = broadcast_strides("sub", &inputs[0].0, &shape).unwrap();
        let sb = broadcast_strides("sub", &inputs[1].0, &shape).unwrap();
        let got: Vec<f32> = (0..want.len())
            .map(|i| {
                let (mut rem, mut ia, mut ib) = (i as i64, 0, 0);
                for d in (0..shape.len()).rev() {
                    let k = rem % shape[d] as i64;
                    rem /= shape[d] as i64;
                    ia += k * sa.0[d];
                    ib += k * sb.0[d];
                }
                inputs[0].1[ia as usize] - inputs[1].1[ib as usize]
            })
            .collect();
        assert_eq!(got, want);
    }
    let op = Op::SumTo {
        shape: Shape::fixed(&[3, 1]),
    };
    let (shape, want) = cpu(&op, std::slice::from_ref(&a));
    let (in_dims, out_dims, per) = sum_to_dims("sum_to", &a.0, &shape).unwrap();
    let got = sum_to(&a.1, &in_dims, &out_dims, a.0.len(), want.len(), per);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

/// elementwise.cu's `sum_to`, transcribed.
fn sum_to(x: &[f32], ind: &Dims, outd: &Dims, rank: usize, n_out: usize, per: i64) -> Vec<f32> {
    (0..n_out)
        .map(|o| {
            let (mut base, mut stride, mut rem) = (0i64, 1i64, o as i64);
            let mut in_stride = [0i64; 8];
            for d in (0..rank).rev() {
                in_stride[d] = stride;
                base += (rem % outd.0[d]) * stride;
                rem /= outd.0[d];
                stride *= ind.0[d];
            }
            (0..per)
                .map(|r| {
                    let (mut rr, mut off) = (r, base);
                    for d in (0..rank).rev() {
                        if outd.0[d] == 1 && ind.0[d] != 1 {
                            off += (rr % ind.0[d]) * in_stride[d];
                            rr /= ind.0[d];
                        }
                    }
                    x[off as usize]
                })
                .sum()
        })
        .collect()
}

/// cuBLAS's column-major strided-batched gemm (alpha 1, beta 0), transcribed from its
/// definition: C[i + j ldc] = sum_l op(A)[i, l] op(B)[l, j].
fn gemm(g: &Geom, a: &[f32], b: &[f32], c: &mut [f32]) {
    use cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T;
    let cfg = g.config(1.0f32, 0.0).unwrap();
    let s = cfg.gemm;
    let (m, n, k) = (s.m as usize, s.n as usize, s.k as usize);
    let (lda, ldb, ldc) = (s.lda as usize, s.ldb as usize, s.ldc as usize);
    for batch in 0..cfg.batch_size as usize {
        let (oa, ob, oc) = (
            batch * cfg.stride_a as usize,
            batch * cfg.stride_b as usize,
            batch * cfg.stride_c as usize,
        );
        for i in 0..m {
            for j in 0..n {
                let at = |l: usize| match s.transa {
                    CUBLAS_OP_T => a[oa + l + i * lda],
                    _ => a[oa + i + l * lda],
                };
                let bt = |l: usize| match s.transb {
                    CUBLAS_OP_T => b[ob + j + l * ldb],
                    _ => b[ob + l + j * ldb],
                };
                c[oc + i + j * ldc] = (0..k).map(|l| at(l) * bt(l)).sum();
            }
        }
    }
}

#[test]
fn cublas_arguments_compute_the_row_major_product() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for (ab, bb) in [(Some(2), Some(2)), (Some(2), None), (None, Some(3))] {
            let mat = |batch: Option<usize>, r: usize, c: usize| match batch {
                Some(n) => vec![n, r, c],
                None => vec![r, c],
            };
            let a = if ta { mat(ab, 7, 5) } else { mat(ab, 5, 7) };
            let b = if tb { mat(bb, 3, 7) } else { mat(bb, 7, 3) };
            let inputs = [(a.clone(), data(6, &a)), (b.clone(), data(7, &b))];
            let op = Op::MatMul {
                trans_a: ta,
                trans_b: tb,
            };
            let (shape, want) = cpu(&op, &inputs);
            let g = Geom::new(&a, &b, ta, tb, &shape);
            let mut got = vec![0.0; want.len()];
            // As `matmul` calls it: operands swapped, C^T = op(B)^T op(A)^T.
            gemm(&g, &inputs[1].1, &inputs[0].1, &mut got);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5, "ta={ta} tb={tb} a={a:?} b={b:?}");
            }
        }
    }
}
