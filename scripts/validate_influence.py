"""Does the influence the callback predicts for one GRPO step match the real change of the target reward?

For each probe prompt q: the prediction is lr x I(q) (`callbacks.influence.InfluenceCallback`'s estimator, on its
parameter subset and on all parameters); the measurement is the change of the expected reward on the target
prompts after one SGD step of `lr` on the GRPO loss of q's rollouts alone, estimated from fresh target rollouts by
the likelihood ratio (`bridge_pl.analysis.probe.one_step_changes`). Prints one row per prompt with 0 < alpha < 1,
then the Spearman correlation and the sign agreement of prediction and measurement.

    python scripts/validate_influence.py --model runs/sft_tiny/hf_model --probe data/tiny_rl_train \\
        --target data/tiny_rl_val
"""

from __future__ import annotations

import argparse
import json

from bridge_pl.analysis.influence import GradientSpace, select_parameters
from bridge_pl.analysis.probe import measure_influence, one_step_changes, sample_probe, spearman
from bridge_pl.data.prompt_sets import load_prompt_set
from bridge_pl.rollout.base import SamplingConfig
from bridge_pl.rollout.factory import bound_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face model directory (e.g. the SFT model)")
    parser.add_argument("--probe", required=True, help="training-distribution prompts (the queries stepped on)")
    parser.add_argument("--target", required=True, help="target prompts whose reward is measured")
    parser.add_argument("--probe-size", type=int, default=12)
    parser.add_argument("--target-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=8, help="rollouts per prompt (step and T)")
    parser.add_argument("--fresh-generations", type=int, default=24, help="target rollouts of the measurement")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--lr", type=float, default=1e-2, help="SGD learning rate of the one step")
    parser.add_argument("--parameters", default="last_layers", choices=["last_layers", "lm_head", "all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write every row and the statistics as JSON here")
    args = parser.parse_args()

    engine, tokenizer, model = bound_engine(args.model, "hf")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens)
    sample = lambda ids, n, s, seed: engine.generate(ids, n, s, seed=seed)  # noqa: E731
    probe = load_prompt_set(args.probe, tokenizer, args.probe_size)
    target = load_prompt_set(args.target, tokenizer, args.target_size)
    train = sample_probe(sample, probe, args.num_generations, sampling, args.seed)
    targets = sample_probe(sample, target, args.num_generations, sampling, args.seed + 1)
    fresh = sample_probe(sample, target, args.fresh_generations, sampling, args.seed + 2)
    predicted = {}
    for subset in dict.fromkeys([args.parameters, "all"]):
        space = GradientSpace(select_parameters(model, subset))
        terms, _ = measure_influence(model, space, train, targets, pad)
        predicted[subset] = [args.lr * t.influence for t in terms]
    measured = one_step_changes(model, train, fresh, pad, args.lr)
    rows = [i for i, m in enumerate(measured) if m is not None]
    print(f"target reward before: {sum(map(sum, fresh.correct)) / sum(map(len, fresh.correct)):.3f}; "
          f"{len(rows)} of {len(measured)} probe prompts have 0 < alpha < 1; lr {args.lr}")  # fmt: skip
    print("prompt  alpha  measured   " + "  ".join(f"pred[{s}]" for s in predicted))
    for i in rows:
        print(f"{i:6d}  {train.alphas[i]:.3f}  {measured[i]:+.2e}  "
              + "  ".join(f"{predicted[s][i]:+.2e}" for s in predicted))  # fmt: skip
    stats = {}
    for subset, values in predicted.items():
        xs, ys = [values[i] for i in rows], [measured[i] for i in rows]
        agree = sum(_sign(x) == _sign(y) for x, y in zip(xs, ys, strict=True)) / max(len(rows), 1)
        stats[subset] = {"spearman": spearman(xs, ys), "sign_agreement": agree, "prompts": len(rows)}
        print(f"{subset}: Spearman {stats[subset]['spearman']:+.3f}, sign agreement {agree:.2f} ({len(rows)} prompts)")
    if args.out:
        payload = {"args": vars(args), "alphas": train.alphas, "measured": measured, "predicted": predicted}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(payload | {"stats": stats}, f, indent=1)
    engine.close()


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


if __name__ == "__main__":
    main()
