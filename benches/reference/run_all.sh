#!/usr/bin/env bash
# Run the three reference benchmarks once each (JSON lines on stdout). Needs setup.sh first.
#   bash benches/reference/run_all.sh [THREADS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${VENV:-$ROOT/.venv}/bin/python"
T="${1:-2}"
"$PY" "$ROOT/benches/reference/mlp.py" --bench --threads "$T"
"$PY" "$ROOT/benches/reference/gpt2.py" --bench --threads "$T"
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for this one command only (see README).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" "$ROOT/benches/reference/gemm.py" --bench --threads "$T"
