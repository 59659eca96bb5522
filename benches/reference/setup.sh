#!/usr/bin/env bash
# Create (or update) the reference-tool virtual environment at <repo>/.venv. Idempotent:
# re-running it only installs what is missing. Reference tools only; CI never runs this.
#
#   bash benches/reference/setup.sh            # torch + numpy + safetensors + threadpoolctl
#   WITH_HF=1 bash benches/reference/setup.sh  # also transformers, for crosscheck_hf.py
#
# Why the full torch install: PyPI's Linux x86_64 torch wheel is the CUDA build. Installed with
# --no-deps (plus its pure-Python deps) `import torch` fails with
# "libcudart.so.13: cannot open shared object file" / "libcublasLt.so.*[0-9] not found",
# because libtorch links the CUDA runtime even for CPU work. So the nvidia-* / cuda-toolkit /
# triton wheels are installed too (~5.4 GB venv; ~1 minute on a fast registry link). CPU ops
# work without a GPU. PyPI has no CPU-only Linux x86_64 torch wheel.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $PYTHON ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q \
  "torch==${TORCH_VERSION}" \
  "numpy==2.4.6" \
  "safetensors==0.8.0" \
  "threadpoolctl==3.8.0"
if [ "${WITH_HF:-0}" = "1" ]; then
  "${PIP[@]}" install -q "transformers==5.24.0"
fi

"$VENV/bin/python" - <<'PY'
import numpy, safetensors, torch
x = torch.randn(8, 8, requires_grad=True)
(x @ x).relu().sum().backward()
assert x.grad is not None
print(f"ok: torch {torch.__version__} (cpu capability {torch.backends.cpu.get_cpu_capability()}, "
      f"cuda available {torch.cuda.is_available()}), numpy {numpy.__version__}, "
      f"safetensors {safetensors.__version__}")
PY
