//! Without a GPU (this repository's CI), creating the backend is a typed `WEFT_DEVICE` error that
//! names each missing library, never a panic. On a machine with CUDA these tests check the
//! opposite: that the backend opens.

use weft_cuda::loader::{Lib, ensure, require};
use weft_cuda::{CudaBackend, probe};

/// True when the driver library loads (a machine with an NVIDIA driver).
fn has_driver() -> bool {
    ensure(Lib::Driver).is_ok()
}

#[test]
fn missing_driver_is_a_device_error_naming_libcuda() {
    if has_driver() {
        eprintln!("SKIPPED missing_driver_is_a_device_error_naming_libcuda: libcuda.so is present");
        return;
    }
    let err = CudaBackend::new(0)
        .err()
        .expect("no backend without a driver");
    assert_eq!(err.code(), "WEFT_DEVICE");
    let msg = err.to_string();
    assert!(msg.contains("devices cuda:1"), "{msg}");
    assert!(msg.contains("libcuda.so (the NVIDIA driver)"), "{msg}");
    assert!(msg.contains("WEFT_CUDA_LIB"), "{msg}");
}

#[test]
fn several_gpus_also_need_nccl() {
    if has_driver() && ensure(Lib::Nccl).is_ok() {
        eprintln!("SKIPPED several_gpus_also_need_nccl: libcuda and libnccl are present");
        return;
    }
    let msg = probe(2)
        .expect_err("no probe without libraries")
        .to_string();
    assert!(msg.contains("libnccl.so.2 (NCCL)"), "{msg}");
    let one = probe(1).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!one.contains("libnccl"), "one GPU needs no NCCL: {one}");
}

#[test]
fn a_library_path_that_does_not_load_is_named() {
    // Run in a child process: the variable is read per call, and tests share the process.
    if std::env::var_os("WEFT_TEST_CHILD").is_some() {
        let err = require(&[Lib::Cublas], "the test").expect_err("bogus path must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("WEFT_CUBLAS_LIB = /nonexistent/libcublas.so.13"),
            "{msg}"
        );
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    // Output captured, so the child's own summary line is not counted as more tests.
    let out = std::process::Command::new(exe)
        .args(["--exact", "a_library_path_that_does_not_load_is_named"])
        .env("WEFT_TEST_CHILD", "1")
        .env("WEFT_CUBLAS_LIB", "/nonexistent/libcublas.so.13")
        .output()
        .expect("run the child test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
