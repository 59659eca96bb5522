#!/usr/bin/env python3
"""fp32 GEMM reference (workload G of shared/BENCHMARKS.md): GFLOP/s = 2 n^3 / t.

Prints one JSON line per (impl, n): numpy (its BLAS, normally OpenBLAS) and, if importable,
torch. A first line {"workload":"G","info":...} reports the BLAS library, its threading layer
and the kernel (core type) it selected, via threadpoolctl when installed.

This machine may export OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (for older OpenBLAS builds) and
they slow a current numpy. For benchmark runs unset both for this command only:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benches/reference/gemm.py --bench
Never change them in tests or CI. Reference tool only: nothing in CI runs it.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def blas_info():
    info = {
        "machine": common.machine_info(),
        "numpy": np.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: d.get(k) for k in ("internal_api", "version", "architecture", "threading_layer",
                                   "num_threads", "filepath")}
            for d in threadpool_info()
        ]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def time_matmul(fn, reps, min_time):
    fn()  # warm-up
    times = []
    t_start = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - t_start < min_time and len(times) < 100):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", action="store_true", required=True)
    p.add_argument("--sizes", default="256,512,1024,2048")
    p.add_argument("--reps", type=int, default=7, help="at least this many timed runs per size")
    p.add_argument("--min-time", type=float, default=0.5, help="keep timing until this many seconds")
    p.add_argument("--threads", type=int, default=2, help="threads for numpy's BLAS and torch")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)

    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        pass
    print(json.dumps({"workload": "G", "info": blas_info()}))

    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        t, runs = time_matmul(lambda: np.matmul(a, b, out=c), args.reps, args.min_time)
        print(json.dumps({"workload": "G", "impl": "numpy", "n": n, "gflops": round(2 * n**3 / t / 1e9, 2),
                          "ms_median": round(t * 1e3, 3), "runs": runs, "threads": args.threads}), flush=True)

    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            torch.set_num_threads(args.threads)
            for n in sizes:
                g = torch.Generator().manual_seed(0)
                a = torch.randn(n, n, generator=g)
                b = torch.randn(n, n, generator=g)
                c = torch.empty(n, n)
                t, runs = time_matmul(lambda: torch.matmul(a, b, out=c), args.reps, args.min_time)
                print(json.dumps({"workload": "G", "impl": "pytorch", "n": n,
                                  "gflops": round(2 * n**3 / t / 1e9, 2), "ms_median": round(t * 1e3, 3),
                                  "runs": runs, "threads": args.threads, "torch": torch.__version__}),
                      flush=True)
    if limiter is not None:
        limiter.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
