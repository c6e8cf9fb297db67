#!/usr/bin/env bash
# The README's main job on the embedded default, on CPU (~15 minutes on 2 cores): set up the environment, build the
# tiny model and the tiny_* iGSM splits, SFT on plain-CoT answers, greedy evaluation, GRPO with the HF engine,
# evaluation again. Outputs: runs/ (TensorBoard, checkpoints, Hugging Face models, eval reports) and data/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bridge() { "${BRIDGE_VENV:-.venv}/bin/bridge" "$@"; }

bridge model init --out runs/tiny_model --overwrite
bridge data generate --split tiny_sft --style plain --out data/tiny_sft_vanilla --overwrite --quiet
for split in tiny_rl_train tiny_rl_val tiny_test_id tiny_test_ood; do
  bridge data generate --split "$split" --out "data/$split" --overwrite --quiet
done
bridge data verify data/tiny_sft_vanilla
# a re-run replaces the exports of the previous one (a run refuses to write over another run's model unless asked)
bridge fit --config configs/sft/tiny.yaml --model.init_args.overwrite_output_dir true   # -> runs/sft_tiny/hf_model
bridge eval --model runs/sft_tiny/hf_model --data id=data/tiny_test_id --data ood=data/tiny_test_ood \
  --limit 200 --max-new-tokens 320
bridge fit --config configs/grpo/tiny.yaml --model.init_args.overwrite_output_dir true  # -> runs/grpo_tiny/hf_model
bridge eval --model runs/grpo_tiny/hf_model --data id=data/tiny_test_id --data ood=data/tiny_test_ood \
  --limit 200 --max-new-tokens 320
echo "done: tensorboard --logdir runs   (SFT: runs/sft_tiny, GRPO: runs/grpo_tiny; eval reports in runs/*/hf_model/eval)"
