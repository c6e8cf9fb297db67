#!/usr/bin/env bash
# Set up the environment if needed, then run the default test tier (extra pytest arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec "${BRIDGE_VENV:-.venv}/bin/python" -m pytest "$@"
