#!/usr/bin/env bash
# Regenerate the committed fixtures under crates/core/tests/fixtures/ and re-check them.
# Deterministic: with the pinned torch the files come out bit-identical.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${VENV:-$ROOT/.venv}/bin/python"
R="$ROOT/benches/reference"
F="$ROOT/crates/core/tests/fixtures"
TINY=(--layers 2 --heads 2 --dim 32 --seq 16 --vocab 64 --batch 2 --steps 5 --seed 1337)
"$PY" "$R/gpt2.py" --make-fixture "$F/gpt_tiny" "${TINY[@]}"
"$PY" "$R/gpt2.py" --make-fixture "$F/gpt_tiny_wd" "${TINY[@]}" --weight-decay 0.1
"$PY" "$R/mlp.py" --make-fixture "$F/mlp_tiny" --sizes 8,16,4 --batch 4 --steps 5 --seed 1337
"$PY" "$R/gpt2.py" --check-fixture "$F/gpt_tiny"
"$PY" "$R/gpt2.py" --check-fixture "$F/gpt_tiny_wd"
"$PY" "$R/mlp.py" --check-fixture "$F/mlp_tiny"
