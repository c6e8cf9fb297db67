#!/usr/bin/env bash
# The README's main job on the embedded default: set up the environment, then run the data pipeline
# (the paper's splits at quick-start size, plain and BRIDGE SFT answers, stats and verification).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
OUT=${1:-runs/quickstart}
bridge() { "${BRIDGE_VENV:-.venv}/bin/bridge" "$@"; }

bridge data generate --split sft --size 500 --style plain --out "$OUT/sft_vanilla" --overwrite
bridge data generate --split sft --size 500 --style bridge --behaviors full --out "$OUT/sft_bridge" --overwrite
bridge data generate --split sft --size 500 --style plain --augment pp-aug --copies 4 --out "$OUT/sft_pp_aug" --overwrite
bridge data generate --split sft --size 500 --style plain --augment rc-aug --copies 4 --out "$OUT/sft_rc_aug" --overwrite
bridge data generate --split rl_train --size 2000 --out "$OUT/rl_train" --overwrite
bridge data generate --split rl_val --out "$OUT/rl_val" --overwrite
bridge data generate --split test_id --out "$OUT/test_id" --overwrite
bridge data generate --split test_ood --out "$OUT/test_ood" --overwrite
for split in sft_vanilla sft_bridge sft_pp_aug sft_rc_aug rl_train test_id test_ood; do
  bridge data verify "$OUT/$split"
done
bridge data stats "$OUT/sft_bridge" --out "$OUT/sft_bridge/stats.json"
echo "datasets written under $OUT (stats of the BRIDGE SFT set: $OUT/sft_bridge/stats.json)"
