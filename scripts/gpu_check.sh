#!/usr/bin/env bash
# shellcheck disable=SC2317  # the check_* functions are called by name ("check_${name//-/_}")
# The GPU lane: six named checks on one CUDA device, each under its own time limit, < 9 minutes in all, and one
# opt-in check (run only when named) that needs most of a device session on its own.
#
#   bash scripts/gpu_check.sh              # every check; logs and summary.txt under ${OUT:-/tmp/gpu_check}
#   bash scripts/gpu_check.sh --only bench-sft,grpo-run
#   bash scripts/gpu_check.sh --only experiment   # configs/experiments/gpu_small.yaml, ~10 min; its report in OUT
#   bash scripts/gpu_check.sh --list | --dry-run | --help
#   bash scripts/gpu_check.sh --cpu        # rehearse the plumbing on a CPU (tiny sizes; the figures mean nothing)
#
# Runs from the working tree as it is (PYTHONPATH=repo root, the CLI as `python -m bridge_pl.cli`) with the
# python that has torch: $BRIDGE_PYTHON, else $PYTHON, else python3. Installs nothing from the network
# (HF_HUB_OFFLINE=1); Python packages missing there (jsonargparse for LightningCLI, say) are installed from the
# wheels in $BRIDGE_WHEELS (default .whl/ in the repository) into a scratch folder, if there are any
# (tests/README.md, "The GPU lane", says how to prepare them). Without CUDA every check is skipped, exit 0.
# Exit status: 0 all passed or skipped, 1 a check failed, 2 bad usage or no torch.
# Longer than a thin wrapper: it is the whole lane (checks, limits, figures, summary) in one prepared script.
set -uo pipefail  # no -e: a failed check is recorded and the next one runs

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${BRIDGE_PYTHON:-${PYTHON:-python3}}
LOG_DIR=${OUT:-/tmp/gpu_check}
WHEELS=${BRIDGE_WHEELS:-$ROOT/.whl}

CHECKS=(gpu-tier bench-sft bench-grpo bench-rollout grpo-run sft-fsdp2)
OPT_IN=(experiment)  # run only when named in --only
declare -A LIMIT=([gpu-tier]=120 [bench-sft]=120 [bench-grpo]=60 [bench-rollout]=60 [grpo-run]=90 [sft-fsdp2]=60
                  [experiment]=560)
declare -A ABOUT=(
  [gpu-tier]="pytest -m gpu: SFT and GRPO through the CLI on the GPU in bf16, shared-prefix decoding logits (2-GPU FSDP tests skip on 1)"
  [bench-sft]="scripts/bench_sft.py: sdpa + bf16, then packed rows with flash_attention_2 (if flash_attn imports)"
  [bench-grpo]="scripts/bench_grpo.py: GRPOModule + HFEngine step time, ours alone unless TRL is installed"
  [bench-rollout]="scripts/bench_rollout.py: generated tokens/s of HFEngine's loop (shared and copied prompts), static cache and continuous batching against generate"
  [grpo-run]="bridge fit configs/grpo/tiny.yaml: a from-scratch llama-30m, bf16, a few steps; reward, step time"
  [sft-fsdp2]="bridge fit configs/sft/tiny.yaml + configs/trainer/fsdp2.yaml on 1 device (FSDP2 over a 1-GPU mesh)"
  [experiment]="bridge experiment run configs/experiments/gpu_small.yaml: vanilla vs BRIDGE at llama-30m, one seed"
)
# Python modules each check imports (one missing fails the check with its name instead of a traceback).
BASE="torch lightning transformers peft torchmetrics tensorboard tqdm pyarrow yaml safetensors tokenizers"
CLI="jsonargparse docstring_parser typeshed_client"  # LightningCLI needs jsonargparse[signatures]
declare -A NEEDS=([gpu-tier]="$BASE $CLI pytest hypothesis" [bench-sft]="$BASE" [bench-grpo]="$BASE"
                  [bench-rollout]="$BASE" [grpo-run]="$BASE $CLI" [sft-fsdp2]="$BASE $CLI"
                  [experiment]="$BASE $CLI")

usage() {
  sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' | grep -v shellcheck | sed 's/^# \{0,1\}//'
  echo
  echo "Options: --list  --only NAME[,NAME]  --dry-run  --cpu  --help"
  echo "Environment: BRIDGE_PYTHON / PYTHON, OUT (log folder), BRIDGE_WHEELS, GPU_CHECK_BUDGET (seconds; default 525,"
  echo "  or the selected checks' limits + 15 s when more; on --cpu 1500, or 3x the limits + 15 s)"
}

list_checks() {
  local name
  for name in "${CHECKS[@]}"; do printf '%-11s %4ss  %s\n' "$name" "${LIMIT[$name]}" "${ABOUT[$name]}"; done
  for name in "${OPT_IN[@]}"; do printf '%-11s %4ss  (opt-in: --only %s) %s\n' "$name" "${LIMIT[$name]}" "$name" \
    "${ABOUT[$name]}"; done
}

# ------------------------------------------------------------------------------------------------ arguments
DRY_RUN=0 MODE=gpu ONLY="" STEP_WHY=""
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --list) list_checks; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --cpu) MODE=cpu ;;
    --only) [[ $# -ge 2 ]] || { echo "gpu_check: --only needs NAME[,NAME]" >&2; exit 2; }; ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SELECTED=("${CHECKS[@]}")
if [[ -n $ONLY ]]; then
  SELECTED=()
  IFS=, read -r -a wanted <<<"$ONLY"
  for name in "${wanted[@]}"; do
    if [[ -z ${LIMIT[$name]+x} ]]; then
      echo "gpu_check: unknown check '$name' in --only; the checks are: ${CHECKS[*]} ${OPT_IN[*]}" >&2
      exit 2
    fi
    SELECTED+=("$name")
  done
fi

# Sizes: on the GPU the lane's; with --cpu the smallest that still run every code path.
if [[ $MODE == gpu ]]; then
  ACCEL=gpu PREC=bf16-mixed
  SFT_BENCH=(--preset llama-100m --size 512 --batch-size 16 --steps 30 --warmup 5 --rounds 1)
  GRPO_BENCH=(--preset llama-30m --prompts 4 --generations 16 --max-new-tokens 128 --steps 4 --warmup 1)
  ROLLOUT_BENCH=(--preset llama-30m --dtype bfloat16 --prompts 8 --generations 16 --max-new-tokens 256 --calls 2)
  RUN_PRESET=llama-30m RL_PROMPTS=64 RL_VAL=16 GRPO_STEPS=6 GRPO_BATCH=8 GRPO_N=8 GRPO_TOKENS=128
  SFT_ROWS=256 SFT_STEPS=20 SFT_BATCH=16
else
  ACCEL=cpu PREC=32-true
  SFT_BENCH=(--preset llama-1m --size 32 --max-length 256 --batch-size 4 --steps 2 --warmup 1 --rounds 1)
  GRPO_BENCH=(--preset llama-1m --split tiny_rl_train --prompts 2 --generations 2 --max-new-tokens 16 --steps 1
              --warmup 0)
  ROLLOUT_BENCH=(--preset llama-1m --split tiny_rl_train --prompts 2 --generations 2 --max-new-tokens 16 --calls 1)
  RUN_PRESET=llama-1m RL_PROMPTS=8 RL_VAL=4 GRPO_STEPS=2 GRPO_BATCH=2 GRPO_N=2 GRPO_TOKENS=16
  SFT_ROWS=32 SFT_STEPS=3 SFT_BATCH=4
fi
# Seconds for the whole lane: a check never gets more than what is left. A 2-core CPU rehearsal needs 3x longer.
# The opt-in check brings its own time: the budget is at least the selected limits' sum.
SELECTED_SUM=0
for name in "${SELECTED[@]}"; do SELECTED_SUM=$((SELECTED_SUM + LIMIT[$name])); done
if [[ $MODE == cpu ]]; then
  for name in "${CHECKS[@]}" "${OPT_IN[@]}"; do LIMIT[$name]=$((LIMIT[$name] * 3)); done
  BUDGET=$((3 * SELECTED_SUM + 15 > 1500 ? 3 * SELECTED_SUM + 15 : 1500))
else
  BUDGET=$((SELECTED_SUM + 15 > 525 ? SELECTED_SUM + 15 : 525))
fi
BUDGET=${GPU_CHECK_BUDGET:-$BUDGET}
BRIDGE=("$PY" -m bridge_pl.cli)
ON_DEVICE=(--trainer.accelerator "$ACCEL" --trainer.devices 1 --trainer.precision "$PREC"
           --trainer.enable_progress_bar false --trainer.log_every_n_steps 1)

# ------------------------------------------------------------------------------------------------ plumbing
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
LANE_START=$(now)

# step CMD...: run one command of the current check under what is left of its limit (and of the lane's budget),
# its output to the console, the check's log and $WORK/step.out. Returns the command's status (124: timed out).
show() {  # the command as it would be typed; the TensorBoard snippet by its name
  local arg
  printf '+'
  for arg in "$@"; do
    if [[ $arg == "$TB_SUMMARY" ]]; then printf ' %s' '<tensorboard summary snippet>'
    elif [[ $arg == "${EXPERIMENT_SUMMARY:-}" ]]; then printf ' %s' '<experiment report snippet>'
    else printf ' %q' "$arg"; fi
  done
}

step() {
  if ((DRY_RUN)); then show "$@"; printf '\n'; return 0; fi
  local left lane_left
  left=$(awk -v d="$CHECK_DEADLINE" -v n="$(now)" 'BEGIN { printf "%d", d - n }')
  # 5 s of the lane kept for timeout's kill grace
  lane_left=$(awk -v s="$LANE_START" -v b="$BUDGET" -v n="$(now)" 'BEGIN { printf "%d", s + b - n - 5 }')
  ((lane_left < left)) && left=$lane_left
  if ((left < 5)); then
    STEP_WHY="not run: out of time" && note "gpu_check: out of time (check limit or lane budget) for: $*"
    return 124
  fi
  { show "$@"; printf '   # limit %ss\n' "$left"; } | tee -a "$CHECK_LOG"
  timeout -k 5 "$left" "$@" 2>&1 | tee -a "$CHECK_LOG" | tee "$WORK/step.out"
  local rc=${PIPESTATUS[0]}
  STEP_WHY="exit $rc, see $(basename "$CHECK_LOG")"
  ((rc == 124 || rc == 137)) && STEP_WHY="timed out after ${left}s" && note "gpu_check: $STEP_WHY"
  return "$rc"
}

note() { echo "$*" | tee -a "${CHECK_LOG:-/dev/null}"; }
last_line() { grep -E "$1" "$WORK/step.out" 2>/dev/null | tail -n 1; }

# tb_summary GLOB TAG...: every value of each TensorBoard scalar of the newest run matching GLOB, and one figure.
TB_SUMMARY='
import glob, statistics, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
runs = sorted(glob.glob(sys.argv[1]))
if not runs:
    sys.exit(f"no run directory matches {sys.argv[1]}")
events = EventAccumulator(runs[-1], size_guidance={"scalars": 0})
events.Reload()
parts = []
for tag in sys.argv[2:]:
    if tag not in events.Tags()["scalars"]:
        print(f"{tag}: not logged")
        continue
    points = [(e.step, e.value) for e in events.Scalars(tag)]
    print(f"{tag}: " + ", ".join(f"{s}: {v:.4g}" for s, v in points))
    values = [v for _, v in points]
    parts.append(f"{tag} {values[0]:.3g} -> {values[-1]:.3g} (median {statistics.median(values):.3g})")
print("figure: " + "; ".join(parts))
'
tb_summary() { step "$PY" -c "$TB_SUMMARY" "$@"; }

# ------------------------------------------------------------------------------------------------ checks
# Each sets STATUS (pass|fail|skip) and FIGURE.
check_gpu_tier() {
  step "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider tests
  local rc=$? summary
  summary=$(last_line '(passed|failed|error|skipped|no tests ran)' | sed 's/^=* *//; s/ *=*$//')
  FIGURE=${summary:-no pytest summary ($STEP_WHY)}
  if ((rc != 0)); then STATUS=fail
  elif [[ $summary != *passed* ]]; then
    STATUS=$([[ $MODE == cpu ]] && echo skip || echo fail)  # on a CUDA machine every gpu test must run
  else STATUS=pass; fi
}

sft_figure() {  # "<ours> tok/s, <ours / Trainer>x Trainer" from bench_sft's output
  echo "$(last_line '^SFTModule' | awk '{print $(NF-2)}') tok/s, $(last_line '^ratio:' | awk '{print $2}') Trainer"
}

check_bench_sft() {
  local figures=() rc=0
  if step "$PY" scripts/bench_sft.py --accelerator "$ACCEL" --precision "$PREC" --attn-implementation sdpa \
    "${SFT_BENCH[@]}"; then
    figures+=("sdpa $(sft_figure);")
  else rc=1 figures+=("sdpa failed ($STEP_WHY);"); fi
  if [[ $ACCEL != gpu ]]; then
    note "flash_attention_2 packed run skipped: flash-attn runs on CUDA only"; figures+=("fa2 skip (cpu)")
  elif [[ $HAVE_FLASH != 1 ]]; then
    note "flash_attention_2 packed run skipped: flash_attn does not import with $PY ($FLASH_WHY)"
    figures+=("fa2 skip (no flash_attn)")
  else
    if step "$PY" scripts/bench_sft.py --accelerator gpu --precision bf16-mixed \
      --attn-implementation flash_attention_2 --batching pack "${SFT_BENCH[@]}"; then
      figures+=("fa2+pack $(sft_figure)")
    else rc=1 figures+=("fa2+pack failed ($STEP_WHY)"); fi
  fi
  ((DRY_RUN)) && note "(a real run makes the flash_attention_2 run only if flash_attn imports)"
  STATUS=$( ((rc == 0)) && echo pass || echo fail)
  FIGURE="${figures[*]}"
}

check_bench_grpo() {
  local trl=()
  [[ $HAVE_TRL == 1 ]] || trl=(--skip-trl)
  step "$PY" scripts/bench_grpo.py --accelerator "$ACCEL" --precision "$PREC" "${GRPO_BENCH[@]}" "${trl[@]}"
  local rc=$?
  ((DRY_RUN)) && note "(a real run adds TRL's side, and the ratio, only if trl imports)"
  if ((rc != 0)); then STATUS=fail FIGURE="failed ($STEP_WHY)"; return; fi
  STATUS=pass FIGURE="ours $(last_line '^GRPOModule' | awk '{print $(NF-5), $(NF-4)}')"
  if [[ $HAVE_TRL == 1 ]]; then FIGURE+=", TRL / ours $(last_line '^ratio:' | awk '{print $2}')"
  else FIGURE+=" (no TRL: no ratio)"; fi
}

check_bench_rollout() {
  step "$PY" scripts/bench_rollout.py --engines generate,compact,copied,static,continuous "${ROLLOUT_BENCH[@]}"
  local rc=$?
  if ((rc != 0)); then STATUS=fail FIGURE="failed ($STEP_WHY)"; return; fi
  STATUS=pass
  FIGURE="tok/s generate $(last_line '^ *generate:' | awk '{print $2}'), compact $(last_line '^ *compact:' | awk '{print $2, $5}')"
  FIGURE+=", static $(last_line '^ *static:' | awk '{print $5}'), continuous $(last_line '^ *continuous:' | awk '{print $5}')"
}

check_grpo_run() {
  local w=$WORK/grpo
  STATUS=fail
  if ! { FIGURE="set-up failed" && step "${BRIDGE[@]}" model init --preset "$RUN_PRESET" --out "$w/model" &&
    step "${BRIDGE[@]}" data generate --split tiny_rl_train --size "$RL_PROMPTS" --out "$w/rl_train" --quiet &&
    step "${BRIDGE[@]}" data generate --split tiny_rl_val --size "$RL_VAL" --out "$w/rl_val" --quiet &&
    FIGURE="bridge fit failed" && step "${BRIDGE[@]}" fit --config configs/grpo/tiny.yaml "${ON_DEVICE[@]}" \
      --trainer.max_steps "$GRPO_STEPS" --trainer.val_check_interval "$GRPO_STEPS" \
      --trainer.logger.init_args.save_dir "$w/runs" \
      --model.init_args.model_path "$w/model" --model.init_args.hf_output_dir "$w/hf_model" \
      --model.init_args.rollout.num_generations "$GRPO_N" \
      --model.init_args.rollout.sampling.max_new_tokens "$GRPO_TOKENS" \
      --data.init_args.train_path "$w/rl_train" --data.init_args.val_path "$w/rl_val" \
      --data.init_args.limit_val "$RL_VAL" --data.init_args.batch_size "$GRPO_BATCH" &&
    FIGURE="no Hugging Face model written" && model_written "$w/hf_model" &&
    FIGURE="no TensorBoard scalars" &&
    tb_summary "$w/runs/*/version_*" train/reward timing/step_s perf/rollout_tokens_per_sec val/accuracy; }; then
    FIGURE+=" ($STEP_WHY)"
    return
  fi
  STATUS=pass FIGURE=$(last_line '^figure:' | sed 's/^figure: //; s#train/reward#reward#; s#timing/step_s#step s#;
    s#perf/rollout_tokens_per_sec#rollout tok/s#; s#val/accuracy#val acc#')
}

check_sft_fsdp2() {
  local w=$WORK/fsdp2
  STATUS=fail
  # configs/trainer/fsdp2.yaml is written for 2 devices; on one the data-parallel mesh has a single rank:
  # fully_shard still wraps every decoder layer (DTensor parameters) and the full-state-dict gathers run.
  if ! { FIGURE="set-up failed" && step "${BRIDGE[@]}" model init --preset "$RUN_PRESET" --out "$w/model" &&
    step "${BRIDGE[@]}" data generate --split tiny_sft --style plain --size "$SFT_ROWS" --out "$w/sft" --quiet &&
    FIGURE="bridge fit failed" && step "${BRIDGE[@]}" fit --config configs/sft/tiny.yaml \
      --config configs/trainer/fsdp2.yaml "${ON_DEVICE[@]}" --trainer.strategy.init_args.data_parallel_size 1 \
      --trainer.max_steps "$SFT_STEPS" --trainer.val_check_interval "$SFT_STEPS" \
      --trainer.logger.init_args.save_dir "$w/runs" \
      --model.init_args.model_path "$w/model" --model.init_args.hf_output_dir "$w/hf_model" \
      --data.init_args.train_path "$w/sft" --data.init_args.batch_size "$SFT_BATCH" &&
    FIGURE="no Hugging Face model written" && model_written "$w/hf_model" &&
    FIGURE="no TensorBoard scalars" && tb_summary "$w/runs/*/version_*" train/loss train/tokens_per_sec val/loss; }
  then
    FIGURE+=" ($STEP_WHY)"
    return
  fi
  STATUS=pass FIGURE=$(last_line '^figure:' | sed 's/^figure: //; s#train/tokens_per_sec#tok/s#; s#train/##')
}

# The report's gains, one line per method, and the figure line.
EXPERIMENT_SUMMARY='
import json, sys
report = json.load(open(sys.argv[1]))
parts = []
for method, row in report["table"].items():
    cells, gains = [], []
    for split in ("test_id", "test_ood"):
        if (row.get(split) or {}).get("gain"):
            sft, rft, gain = (100 * row[split][key]["mean"] for key in ("sft", "rft", "gain"))
            cells.append(f"{split} {sft:.1f} -> {rft:.1f} ({gain:+.1f})")
            gains.append(f"{gain:+.1f}")
    print(f"{method}: " + ", ".join(cells))
    parts.append(f"{method} " + " / ".join(gains))
print("finished seeds:", report["finished_seeds"])
print("figure: RL gain ID / OOD: " + "; ".join(parts))
'

check_experiment() {
  local config=configs/experiments/gpu_small.yaml out=runs/experiments/gpu_small
  if [[ $MODE == cpu ]]; then  # the same config shrunk to seconds: a 1M model, a few problems, steps and tokens
    config=$WORK/gpu_small_cpu.yaml out=$WORK/experiment
    ((DRY_RUN)) || cpu_experiment "$config" "$out"
  fi
  STATUS=fail
  if ! { FIGURE="bridge experiment run failed" && step "${BRIDGE[@]}" experiment run --config "$config" &&
    FIGURE="no report" && step "$PY" -c "$EXPERIMENT_SUMMARY" "$out/report.json"; }; then
    FIGURE+=" ($STEP_WHY)"
    [[ $STEP_WHY == timed* ]] && FIGURE+="; finished stages are kept: run --only experiment again on this machine"
    return
  fi
  ((DRY_RUN)) || cp "$out/report.md" "$out/report.json" "$out"/*.png "$LOG_DIR/" 2>/dev/null
  STATUS=pass FIGURE=$(last_line '^figure:' | sed 's/^figure: //')
}

cpu_experiment() {  # CONFIG OUT: gpu_small.yaml with every size shrunk, on the CPU
  local sft=(--trainer.max_steps 2 --trainer.val_check_interval 2 --trainer.limit_val_batches 1
             --data.init_args.limit 16 --data.init_args.batch_size 4 --trainer.accelerator cpu
             --trainer.precision 32-true)
  cat >"$1" <<YAML
extends: "$ROOT/configs/experiments/gpu_small.yaml"
out_dir: "$2"
base_preset: llama-1m
pretrain: {size: 16, args: [$(printf '"%s", ' "${sft[@]}")]}
sft_args: [$(printf '"%s", ' "${sft[@]}")]
grpo_args: [--trainer.max_steps=1, --trainer.val_check_interval=1, --trainer.limit_val_batches=1,
            --trainer.accelerator=cpu, --trainer.precision=32-true, --data.init_args.batch_size=2,
            --data.init_args.limit_val=2, --model.init_args.rollout.num_generations=2,
            --model.init_args.rollout.sampling.max_new_tokens=8]
eval_limit: 4
eval_max_new_tokens: 8
probe: {size: 3, num_generations: 2, max_new_tokens: 8, target_alpha: [0.0, 1.0], target_pool: 5,
        screen_generations: 2}
YAML
}

model_written() {  # the fit wrote a loadable-looking Hugging Face directory
  ((DRY_RUN)) && return 0
  [[ -f $1/config.json ]] || { STEP_WHY="no $1/config.json"; return 1; }
}

# ------------------------------------------------------------------------------------------------ preflight
PREFLIGHT='
import importlib, importlib.util, sys
import torch
print(f"python {sys.version.split()[0]} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name()} x {torch.cuda.device_count()}")
for name in ("lightning", "transformers", "peft", "jsonargparse", "trl", "flash_attn"):
    try:
        version = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as err:  # flash_attn can fail on import (an undefined CUDA symbol), not only be absent
        reason = (str(err).splitlines() or [""])[0][:160]
        print(f"{name}: not importable ({type(err).__name__}: {reason})")
    else:
        print(f"{name} {version}")
missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]
print("MISSING=" + " ".join(missing))
'

summary() {  # the table, on the console and in summary.txt
  local name
  {
    printf '\n%-11s %-6s %7s  %s\n' check status seconds "key figure"
    for name in "${SELECTED[@]}"; do
      printf '%-11s %-6s %7s  %s\n' "$name" "${RESULT_STATUS[$name]}" "${RESULT_SECONDS[$name]}" \
        "${RESULT_FIGURE[$name]}"
    done
    echo "lane: $MODE, $(elapsed "$LANE_START") s, logs in $LOG_DIR"
  } | tee "$LOG_DIR/summary.txt"
}

declare -A RESULT_STATUS RESULT_SECONDS RESULT_FIGURE
if ((DRY_RUN)); then
  WORK=${TMPDIR:-/tmp}/gpu_check_work.DRYRUN HAVE_FLASH=1 HAVE_TRL=0 FLASH_WHY=""
  echo "# dry run ($MODE): the commands of ${SELECTED[*]}; python $PY, logs under $LOG_DIR, budget ${BUDGET}s"
  echo "# environment: PYTHONPATH=$ROOT HF_HUB_OFFLINE=1; the work folder is a fresh mktemp -d"
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "+ $PY -m pip install -q --no-index --no-deps --no-compile --target \$WORK/site $WHEELS/*.whl"
  fi
  echo "+ $PY -c <preflight: versions, CUDA, flash_attn, trl, missing modules>"
  for name in "${SELECTED[@]}"; do
    CHECK_LOG=/dev/null
    echo; echo "== $name (limit ${LIMIT[$name]}s): ${ABOUT[$name]}"
    "check_${name//-/_}"
  done
  exit 0
fi

mkdir -p "$LOG_DIR" || exit 2
for name in preflight "${CHECKS[@]}" "${OPT_IN[@]}"; do rm -f "$LOG_DIR/$name.log"; done
rm -f "$LOG_DIR/summary.txt" "$LOG_DIR"/report.{md,json} "$LOG_DIR"/*.png  # nothing of an earlier run is read
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_work.XXXXXX") || exit 2
[[ ${GPU_CHECK_KEEP:-0} == 1 ]] || trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

CHECK_LOG=$LOG_DIR/preflight.log
if ! PROBE=$(timeout 60 "$PY" -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1); then
  echo "$PROBE" >>"$CHECK_LOG"
  echo "gpu_check: $PY cannot import torch (set BRIDGE_PYTHON to the python that has it):" >&2
  echo "$PROBE" | tail -n 3 >&2
  exit 2
fi
if [[ $MODE == gpu && $PROBE != *" True" ]]; then
  note "gpu_check: no CUDA device (torch ${PROBE% *} with $PY: torch.cuda.is_available() is False): skipping" \
    "all checks. Run it on a CUDA machine, or with --cpu to rehearse the plumbing."
  for name in "${SELECTED[@]}"; do
    RESULT_STATUS[$name]=skip RESULT_SECONDS[$name]=0 RESULT_FIGURE[$name]="no CUDA device"
  done
  summary
  exit 0
fi
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  note "installing the carried wheels of $WHEELS into $WORK/site (no index, no network)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl \
    2>&1 | tee -a "$CHECK_LOG" && export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH#"$ROOT"}"
fi
# shellcheck disable=SC2086  # the module lists are meant to split into words
if ! timeout 120 "$PY" -c "$PREFLIGHT" $BASE $CLI pytest hypothesis >"$WORK/preflight.out" 2>&1; then
  cat "$WORK/preflight.out" >>"$CHECK_LOG"
  echo "gpu_check: the preflight failed:" >&2
  tail -n 3 "$WORK/preflight.out" >&2
  exit 2
fi
grep -v '^MISSING=' "$WORK/preflight.out" | tee -a "$CHECK_LOG"
MISSING=$(sed -n 's/^MISSING=//p' "$WORK/preflight.out")
HAVE_TRL=$(grep -q '^trl [0-9]' "$WORK/preflight.out" && echo 1 || echo 0)
HAVE_FLASH=$(grep -q '^flash_attn [0-9]' "$WORK/preflight.out" && echo 1 || echo 0)
FLASH_WHY=$(sed -n 's/^flash_attn: not importable (\(.*\))$/\1/p' "$WORK/preflight.out")
[[ -n $MISSING ]] && note "missing Python modules: $MISSING (carry them as wheels: tests/README.md, the GPU lane)"
if CLI_VERSION=$("$PY" -m bridge_pl.cli --version 2>&1); then note "bridge CLI: $CLI_VERSION (python -m bridge_pl.cli)"
else note "python -m bridge_pl.cli --version failed: $CLI_VERSION"; fi

FAILED=0
for name in "${SELECTED[@]}"; do
  CHECK_LOG=$LOG_DIR/$name.log
  echo; note "== $name (limit ${LIMIT[$name]}s): ${ABOUT[$name]}"
  START=$(now)
  CHECK_DEADLINE=$(awk -v s="$START" -v l="${LIMIT[$name]}" 'BEGIN { printf "%.3f", s + l }')
  absent="" STEP_WHY=""
  for module in ${NEEDS[$name]}; do [[ " $MISSING " == *" $module "* ]] && absent+=" $module"; done
  if [[ -n $absent ]]; then
    STATUS=fail FIGURE="missing Python modules:$absent (carry wheels: tests/README.md)"
    note "$FIGURE"
  else
    "check_${name//-/_}"
  fi
  RESULT_STATUS[$name]=$STATUS RESULT_SECONDS[$name]=$(elapsed "$START") RESULT_FIGURE[$name]=$FIGURE
  note "== $name: $STATUS in ${RESULT_SECONDS[$name]}s: $FIGURE"
  [[ $STATUS == fail ]] && FAILED=1
done
summary
exit "$FAILED"
