#!/usr/bin/env bash
# The GPU check, in two halves.
#
#   scripts/gpu-check.sh build   on a development machine (no GPU needed): builds weft-cuda's
#                                test executables and copies them, stripped, to gpu-check/bin/
#                                (git-ignored), with this machine's node (xz-compressed), ready to
#                                carry to the GPU machine together with dist/, bindings/index.js
#                                and bindings/weft.linux-x64-gnu.node (`npm run build` first).
#   scripts/gpu-check.sh         on a machine with an NVIDIA GPU, no network and no Rust or Node:
#                                runs those executables (the NVRTC kernel check, the CPU-vs-CUDA
#                                op parity tests, the device groups against the host engine, and
#                                training on cuda:N, GPU tests included),
#                                then benchmark W3 of shared/BENCHMARKS.md (GPT-2 124M, bf16,
#                                batch 16 x 1024) for weft (`weft train --devices cuda:1`, when the
#                                node binary and the addon were carried), PyTorch eager and
#                                torch.compile, and prints tokens/s, MFU and the ratios.
#
# Libraries come from the machine: the driver's libcuda.so, and NVRTC, cuBLAS and NCCL from the
# NVIDIA wheels next to PyTorch (found through python3 and passed as WEFT_CUDA_LIB_DIR).
# Environment: PYTHON (default python3), W3_ARGS (extra gpt2_w3.py flags, e.g. "--steps 5"),
# WEFT_GPU_BIN (default gpu-check/bin). Exit status: non-zero if any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${WEFT_GPU_BIN:-gpu-check/bin}
TESTS=(nvrtc_kernels no_gpu ops_parity collectives training)

build() {
  mkdir -p "$BIN"
  cargo test -p weft-cuda --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do
    objcopy --strip-debug "$exe" "$BIN/$name"
    echo "built $BIN/$name ($(du -h "$BIN/$name" | cut -f1))"
  done
  xz -9 -c "$(command -v node)" >"$BIN/node.xz" && echo "built $BIN/node.xz ($(du -h "$BIN/node.xz" | cut -f1))"
}

# weft's W3 through the CLI on one GPU: prints the run's summary JSON line, or nothing.
weft_w3() {
  local node="$BIN/node"
  [ -x "$node" ] || { [ -f "$BIN/node.xz" ] && xz -dc "$BIN/node.xz" >"$node" && chmod +x "$node"; }
  if [ ! -x "$node" ] || [ ! -f dist/cli/main.js ] || [ ! -f bindings/weft.linux-x64-gnu.node ]; then
    echo "weft W3 skipped: carry $BIN/node.xz, dist/, bindings/index.js and the addon" >&2
    return 0
  fi
  # shellcheck disable=SC2086
  "$node" dist/cli/main.js train --model gpt --layers 12 --heads 12 --dim 768 --seq 1024 \
    --vocab 50257 --batch 16 --steps "${WEFT_W3_STEPS:-12}" --devices cuda:1 \
    --set amp.level=O1 --set amp.dtype=bf16 --json | tail -n 1
}

# Folders of the NVIDIA wheels' shared libraries, ':'-separated.
wheel_lib_dirs() {
  "$PY" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    dirs = {d for base in nvidia.__path__ for d in glob.glob(os.path.join(base, "**", "lib"), recursive=True)}
except ImportError:
    dirs = set()
print(":".join(sorted(dirs)))
PY
}

json_field() { # $1: JSON line, $2: field; empty when the line is not JSON (a failed run)
  "$PY" -c '
import json, sys
try:
    v = json.loads(sys.argv[1]).get(sys.argv[2])
except ValueError:
    v = None
print("" if v is None else v)' "$1" "$2"
}

run_tests() {
  local fail=0 t
  for t in "${TESTS[@]}"; do
    if [ ! -x "$BIN/$t" ]; then
      echo "FAIL: $BIN/$t missing (run 'scripts/gpu-check.sh build' where Rust is, and carry $BIN)"
      fail=1
      continue
    fi
    echo "== $t"
    "$BIN/$t" --include-ignored --test-threads=1 || fail=1
  done
  return $fail
}

w3() {
  local eager compiled
  echo "== W3: GPT-2 124M, bf16 autocast, batch 16 x 1024, AdamW"
  # shellcheck disable=SC2086
  eager=$("$PY" benches/reference/gpt2_w3.py ${W3_ARGS:-} | tail -n 1)
  # shellcheck disable=SC2086
  compiled=$("$PY" benches/reference/gpt2_w3.py --compile ${W3_ARGS:-} | tail -n 1)
  echo "$eager"
  echo "$compiled"
  local te tc
  te=$(json_field "$eager" tokens_per_s)
  tc=$(json_field "$compiled" tokens_per_s)
  printf '%-16s %14s %8s\n' impl tokens/s MFU
  printf '%-16s %14s %8s\n' "pytorch eager" "$te" "$(json_field "$eager" mfu)"
  printf '%-16s %14s %8s\n' "torch.compile" "$tc" "$(json_field "$compiled" mfu)"
  local summary tw
  summary=$(weft_w3 | "$PY" -c '
import json, sys
try:
    print(json.dumps(json.loads(sys.stdin.read())["summary"]))
except (ValueError, KeyError):
    pass')
  tw=$(json_field "$summary" tokens_per_s)
  if [ -n "$tw" ] && [ -n "$te" ]; then
    # Same model and tokens: MFU scales with tokens/s.
    printf '%-16s %14s %8s\n' weft "$tw" "$("$PY" -c "import sys; print(round(float(sys.argv[1]) * float(sys.argv[2]) / float(sys.argv[3]), 4))" "$(json_field "$eager" mfu)" "$tw" "$te")"
    "$PY" -c "import sys; w, e, c = map(float, sys.argv[1:]); print(f'ratio weft / eager: {w/e:.3f}, weft / torch.compile: {w/c:.3f}')" "$tw" "$te" "${tc:-nan}"
  else
    printf '%-16s %14s %8s\n' weft "not run" "-"
    echo "weft: no W3 figure (see the lines above: a missing carried binary, or the run's error)"
  fi
  if [ -z "$te" ] || [ -z "$tc" ]; then
    echo "FAIL: a PyTorch W3 run printed no result (see its error above)"
    return 1
  fi
  "$PY" -c "import sys; print(f'ratio torch.compile / eager: {float(sys.argv[2])/float(sys.argv[1]):.3f}')" "$te" "$tc"
}

if [ "${1:-}" = build ]; then
  build
  exit $?
fi

PY=${PYTHON:-python3}
dirs=$(wheel_lib_dirs)
export WEFT_CUDA_LIB_DIR="$dirs"
export WEFT_REQUIRE_NVRTC=1 # the kernel check must run here, not skip
[ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi -L 2>/dev/null || echo "warning: nvidia-smi not found"
echo "WEFT_CUDA_LIB_DIR=$WEFT_CUDA_LIB_DIR"
status=0
run_tests || status=1
w3 || status=1
echo "gpu-check: $([ $status -eq 0 ] && echo passed || echo FAILED)"
exit $status
