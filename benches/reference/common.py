"""Shared helpers for the PyTorch/numpy reference tools (not used by CI)."""
import json
import os
import statistics
import struct
import time

import numpy as np

LLMC_MAGIC = 20240520
LLMC_VERSION = 1


def write_llmc_tokens(path, tokens):
    """llm.c token file: 256 little-endian int32 header (magic, version, count), then uint16."""
    tokens = np.asarray(tokens)
    assert tokens.ndim == 1 and tokens.min() >= 0 and tokens.max() < 65536
    header = np.zeros(256, dtype="<i4")
    header[0] = LLMC_MAGIC
    header[1] = LLMC_VERSION
    header[2] = len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def read_llmc_tokens(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype="<i4")
        assert header[0] == LLMC_MAGIC, f"bad magic {header[0]}"
        assert header[1] == LLMC_VERSION, f"bad version {header[1]}"
        n = int(header[2])
        toks = np.frombuffer(f.read(), dtype="<u2")
    assert len(toks) == n, f"header says {n} tokens, file has {len(toks)}"
    return toks


def param_checksums(named_params):
    """{name: float64 sum of values} in the order given."""
    return {n: float(p.detach().double().sum().item()) for n, p in named_params}


def param_sq_sums(named_params):
    return {n: float((p.detach().double() ** 2).sum().item()) for n, p in named_params}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def time_steps(step_fn, warmup, steps):
    """Run warmup untimed steps, then time each of `steps` steps; return list of ms."""
    for _ in range(warmup):
        step_fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step_fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def median(xs):
    return statistics.median(xs)


def machine_info():
    """CPU name, family/model (AMD family 25 = Zen 3/4, 26 = Zen 5) and the SIMD flags that matter."""
    info = {"cpus": os.cpu_count()}
    keys = {"model name": "cpu", "cpu family": "family", "model": "model"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    if info.get("cpu"):
                        break  # first processor block only
                    continue
                k, v = (x.strip() for x in line.split(":", 1))
                if k in keys and keys[k] not in info:
                    info[keys[k]] = v
                elif k == "flags" and "isa" not in info:
                    fl = set(v.split())
                    info["isa"] = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in fl]
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as f:
            info["loadavg_1m"] = float(f.read().split()[0])  # > cpus: the figures are not trustworthy
    except (OSError, ValueError):
        pass
    return info
