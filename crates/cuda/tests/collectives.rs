//! The CUDA engine's device groups. Without a GPU (CI): choosing an engine needs its
//! libraries and says which is missing. On a GPU (`scripts/gpu-check.sh`): every collective of
//! a `GpuGroup` equals the host engine's bit for bit, and NCCL's (two GPUs or more) within
//! f32 rounding.

use std::time::Duration;
use weft_core::collectives::{Communicator, DeviceCommunicator, GroupSpec, LocalGroup, ReduceOp};
use weft_core::exec::{Backend, HostData};
use weft_cuda::CudaBackend;
use weft_cuda::collectives::{GpuGroup, NcclCommunicator, make_groups};
use weft_cuda::loader::{Lib, ensure};

const TIMEOUT: Duration = Duration::from_secs(30);

fn spec<'a>(ranks: &'a [usize], purpose: &'static str) -> GroupSpec<'a> {
    GroupSpec {
        ranks,
        members: ranks,
        purpose,
        timeout: TIMEOUT,
        store: None,
    }
}

#[test]
fn device_groups_name_the_library_they_need() {
    if ensure(Lib::Driver).is_ok() {
        eprintln!("SKIPPED device_groups_name_the_library_they_need: libcuda.so is present");
        return;
    }
    // Virtual devices on one GPU: the GPU group, which needs the driver.
    let err = make_groups(&spec(&[0, 1], "gradients"), &|_| 0)
        .err()
        .unwrap();
    assert_eq!(err.code(), "WEFT_DEVICE");
    assert!(
        err.to_string().contains("libcuda.so (the NVIDIA driver)"),
        "{err}"
    );
    // Distinct GPUs: NCCL, found under its usual name.
    if ensure(Lib::Nccl).is_err() {
        let err = make_groups(&spec(&[0, 1], "gradients"), &|r| r)
            .err()
            .unwrap();
        assert_eq!(err.code(), "WEFT_DEVICE");
        assert!(err.to_string().contains("libnccl.so.2 (NCCL)"), "{err}");
    }
    // A group mixing a shared and a distinct GPU stays on the host communicators.
    let mixed = make_groups(&spec(&[0, 1, 2], "pipeline"), &|r| r / 2).unwrap();
    assert!(mixed.is_none());
}

/// Rank r's bucket: two f32 tensors with values no two ranks share.
fn bucket(r: usize) -> Vec<Vec<f32>> {
    [5usize, 1027]
        .iter()
        .enumerate()
        .map(|(t, &n)| {
            (0..n)
                .map(|i| ((r * 7919 + t * 104_729 + i) as f32).sin() * 10f32.powi((i % 5) as i32))
                .collect()
        })
        .collect()
}

fn host(b: &CudaBackend, d: &weft_cuda::CudaBuffer) -> Vec<f32> {
    match b.download(d).unwrap() {
        HostData::F32(v) => v,
        other => panic!("{other:?}"),
    }
}

/// Every collective of `comms` (one per rank, on `gpu_of(rank)`) against `LocalGroup`'s; `exact`:
/// bit for bit, else within 1e-6 of the largest magnitude.
fn check_against_host(
    comms: Vec<Box<dyn DeviceCommunicator<weft_cuda::CudaBuffer>>>,
    gpu_of: impl Fn(usize) -> usize + Sync,
    exact: bool,
) {
    let n = comms.len();
    let hosts = LocalGroup::new(n, TIMEOUT);
    let same = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        let big = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let ok = if exact {
                g.to_bits() == w.to_bits()
            } else {
                (g - w).abs() <= 1e-6 * big
            };
            assert!(ok, "{what}: element {i}: {g} vs {w}");
        }
    };
    std::thread::scope(|s| {
        for (r, (comm, hc)) in comms.into_iter().zip(hosts).enumerate() {
            let gpu = gpu_of(r);
            s.spawn(move || {
                let b = CudaBackend::new(gpu).unwrap();
                let up = |v: &[f32]| b.upload(&HostData::F32(v.to_vec())).unwrap();
                for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                    let mine = bucket(r);
                    let mut bufs: Vec<_> = mine.iter().map(|v| up(v)).collect();
                    let mut refs: Vec<_> = bufs.iter_mut().collect();
                    comm.all_reduce(&mut refs, op).unwrap();
                    let mut flat = mine.concat();
                    hc.all_reduce(&mut flat, op).unwrap();
                    let got: Vec<f32> = bufs.iter().flat_map(|d| host(&b, d)).collect();
                    same(&got, &flat, &format!("all_reduce {op} rank {r}"));
                }
                // A length every group size here divides.
                let len = 1020 / n * n;
                let x = bucket(r)[1][..len].to_vec();
                let mut want = vec![0.0; len * n];
                hc.all_gather(&x, &mut want).unwrap();
                let mut out = b.alloc(weft_core::ir::DType::F32, len * n).unwrap();
                comm.all_gather(&up(&x), &mut out).unwrap();
                same(&host(&b, &out), &want, "all_gather");
                let mut want = vec![0.0; len / n];
                hc.reduce_scatter(&x, &mut want, ReduceOp::Sum).unwrap();
                let mut out = b.alloc(weft_core::ir::DType::F32, len / n).unwrap();
                comm.reduce_scatter(&up(&x), &mut out, ReduceOp::Sum)
                    .unwrap();
                same(&host(&b, &out), &want, "reduce_scatter");
                let mut want = vec![0.0; len];
                hc.all_to_all(&x, &mut want).unwrap();
                let mut out = b.alloc(weft_core::ir::DType::F32, len).unwrap();
                comm.all_to_all(&up(&x), &mut out).unwrap();
                same(&host(&b, &out), &want, "all_to_all");
                // A ring of sends, each rank's two messages received in the other order.
                let (to, from) = ((r + 1) % n, (r + n - 1) % n);
                comm.send(&up(&[r as f32; 3]), to, 1).unwrap();
                comm.send(&up(&[r as f32 + 0.5; 4]), to, 2).unwrap();
                let mut a = b.alloc(weft_core::ir::DType::F32, 4).unwrap();
                let mut c = b.alloc(weft_core::ir::DType::F32, 3).unwrap();
                comm.recv(&mut a, from, 2).unwrap();
                comm.recv(&mut c, from, 1).unwrap();
                assert_eq!(host(&b, &a), vec![from as f32 + 0.5; 4]);
                assert_eq!(host(&b, &c), vec![from as f32; 3]);
            });
        }
    });
}

fn gpus() -> usize {
    weft_cuda::probe(1).expect("a GPU")
}

#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn a_gpu_group_equals_the_host_engine_bit_for_bit() {
    let _ = gpus();
    for n in [2, 3, 17] {
        let ranks: Vec<usize> = (0..n).collect();
        let comms = GpuGroup::create(0, &ranks, TIMEOUT).unwrap();
        let boxed = comms.into_iter().map(|c| Box::new(c) as _).collect();
        check_against_host(boxed, |_| 0, true);
    }
}

#[test]
#[ignore = "needs two NVIDIA GPUs and NCCL; scripts/gpu-check.sh runs it"]
fn nccl_groups_match_the_host_engine() {
    let visible = gpus();
    if visible < 2 {
        eprintln!("SKIPPED nccl_groups_match_the_host_engine: {visible} GPU visible");
        return;
    }
    let ranks: Vec<usize> = (0..visible).collect();
    let comms = NcclCommunicator::create(&spec(&ranks, "gradients"), &ranks).unwrap();
    let boxed = comms.into_iter().map(|c| Box::new(c) as _).collect();
    check_against_host(boxed, |r| r, false);
}

#[test]
#[ignore = "needs two NVIDIA GPUs and NCCL; scripts/gpu-check.sh runs it"]
fn an_nccl_group_serves_host_slices_too() {
    let visible = gpus();
    if visible < 2 {
        eprintln!("SKIPPED an_nccl_group_serves_host_slices_too: {visible} GPU visible");
        return;
    }
    let ranks: Vec<usize> = (0..visible).collect();
    let comms = NcclCommunicator::create(&spec(&ranks, "gradients"), &ranks).unwrap();
    let n = comms.len() as f32;
    std::thread::scope(|s| {
        for (r, c) in comms.iter().enumerate() {
            s.spawn(move || {
                let c: &dyn Communicator = c;
                let mut x = [r as f32 + 1.0; 4];
                c.broadcast(&mut x, 1).unwrap();
                assert_eq!(x, [2.0; 4]);
                let mut y = [r as f32 + 1.0; 3];
                c.reduce(&mut y, 0, ReduceOp::Sum).unwrap();
                let want = if r == 0 {
                    n * (n + 1.0) / 2.0
                } else {
                    r as f32 + 1.0
                };
                assert_eq!(y, [want; 3]);
                let mut z = [1.0f32; 5];
                c.all_reduce(&mut z, ReduceOp::Sum).unwrap();
                assert_eq!(z, [n; 5]);
                c.barrier().unwrap();
            });
        }
    });
}
