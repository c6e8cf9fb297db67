#!/usr/bin/env bash
# Create (or reuse) the project virtual environment and install bridge-pl with its dev extras.
# torch is installed first: an empty environment that resolves lightning first pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BRIDGE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${BRIDGE_TORCH:-torch==2.13.0}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
# bench: TRL, for the loss-option parity tests (they check our GRPO terms against its code) and the GRPO benchmark.
"$VENV/bin/python" -m pip install --quiet -e ".[dev,bench]"
echo "environment ready: $VENV (activate with: source $VENV/bin/activate)"
