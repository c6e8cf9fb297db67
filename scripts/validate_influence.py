"""Does the influence the callback predicts for one GRPO step match the real change of the target reward?

For each probe prompt q: the prediction is lr x I(q) (`callbacks.influence.InfluenceCallback`'s estimator, on its
parameter subset and on all parameters); the measurement is the change of the expected reward on the target
prompts after one SGD step of `lr` on the GRPO loss of q's rollouts alone, estimated from fresh target rollouts by
the likelihood ratio (`bridge_pl.analysis.probe.one_step_changes`). Prints one row per prompt with 0 < alpha < 1,
then the Spearman correlation and the sign agreement of prediction and measurement.

How reliable the measurement itself is, is measured too: the fresh rollouts split in two halves (alternate rollouts
of each target prompt) give two measurements (dependent only through the baselines), and their Spearman correlation
estimates the measurement's reliability; the square root of its Spearman-Brown value for the whole set is about the
highest correlation any prediction can show. Each measured change also gets its standard error.

Only target prompts with 0 < alpha < 1 carry signal (r - b is 0 elsewhere), so `--target-alpha LO HI` keeps the
first `--target-size` prompts of the first `--target-pool` whose rollout accuracy, screened on rollouts of their
own (independent of T and of the measurement), lies in [LO, HI].

    python scripts/validate_influence.py --model runs/sft_tiny/hf_model --probe data/tiny_rl_train \\
        --target data/tiny_rl_val
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bridge_pl.analysis.influence import GradientSpace, select_parameters
from bridge_pl.analysis.probe import alpha_window, measure_influence, one_step_terms, sample_probe, spearman
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
    parser.add_argument("--target-pool", type=int, help="target prompts screened for --target-alpha (default: size)")
    parser.add_argument("--target-alpha", type=float, nargs=2, metavar=("LO", "HI"),
                        help="keep target prompts whose screened rollout accuracy lies in [LO, HI]")  # fmt: skip
    parser.add_argument("--screen-generations", type=int, default=8, help="rollouts per prompt of the screening")
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
    start = time.perf_counter()
    probe = load_prompt_set(args.probe, tokenizer, args.probe_size)
    if args.target_pool and not args.target_alpha:
        raise SystemExit("--target-pool screens prompts for --target-alpha: give both, or neither")
    if args.fresh_generations < 2:
        raise SystemExit("--fresh-generations: need at least 2 (each rollout's baseline is its prompt's others)")
    target = load_prompt_set(args.target, tokenizer, args.target_pool or args.target_size)
    if args.target_alpha:
        screen = sample_probe(engine.generate, target, args.screen_generations, sampling, 4 * args.seed + 3)
        in_range = alpha_window(screen, *args.target_alpha, len(target))
        keep = in_range[: args.target_size]
        if not keep:
            raise SystemExit(f"no target prompt of {len(target)} has a screened rollout accuracy in "
                             f"{args.target_alpha}: widen --target-alpha or raise --target-pool")  # fmt: skip
        print(f"target: the first {len(keep)} of the {len(in_range)} of {len(target)} screened prompts with alpha in "
              f"{args.target_alpha}")  # fmt: skip
        target = target.subset(keep)
    # one sampling seed per role and run (4 seed + role): no two roles or runs share a rollout
    train = sample_probe(engine.generate, probe, args.num_generations, sampling, 4 * args.seed)
    targets = sample_probe(engine.generate, target, args.num_generations, sampling, 4 * args.seed + 1)
    fresh = sample_probe(engine.generate, target, args.fresh_generations, sampling, 4 * args.seed + 2)
    predicted = {}
    for subset in dict.fromkeys([args.parameters, "all"]):
        space = GradientSpace(select_parameters(model, subset))
        terms, _ = measure_influence(model, space, train, targets, pad)
        predicted[subset] = [args.lr * t.influence for t in terms]
    per_rollout = one_step_terms(model, train, fresh, pad, args.lr)
    sizes = [len(c) for c in fresh.correct]
    rows = [i for i, m in enumerate(per_rollout) if m is not None]
    half = torch.cat([torch.arange(len(c)) % 2 == 0 for c in fresh.correct])  # alternate rollouts of each prompt
    measured = [None if m is None else float(m.mean()) for m in per_rollout]
    halves = [[float(per_rollout[i][half == side].mean()) for i in rows] for side in (True, False)]
    # standard error of each measured change: the terms of one target prompt are alike, those of two independent
    errors = [None if m is None else _standard_error(m, sizes) for m in per_rollout]
    clear = [i for i in rows if abs(measured[i]) > 2 * errors[i]]
    print(f"target reward before: {sum(map(sum, fresh.correct)) / sum(map(len, fresh.correct)):.3f} "
          f"(mean target alpha {sum(targets.alphas) / len(targets.alphas):.3f}); "
          f"{len(rows)} of {len(measured)} probe prompts have 0 < alpha < 1; lr {args.lr}")  # fmt: skip
    print("prompt  alpha  measured   std.err.  " + "  ".join(f"pred[{s}]" for s in predicted))
    for i in rows:
        print(f"{i:6d}  {train.alphas[i]:.3f}  {measured[i]:+.2e}  {errors[i]:.1e}   "
              + "  ".join(f"{predicted[s][i]:+.2e}" for s in predicted))  # fmt: skip
    split = spearman(*halves)
    whole = 2 * split / (1 + split) if split >= 0 else float("nan")  # Spearman-Brown: twice the rollouts
    stats = {
        "measurement_split_half": {"spearman": split, "spearman_brown": whole, "sign_agreement": _agreement(*halves)}
    }
    print(f"measurement reliability: the two halves of the fresh rollouts agree at Spearman {split:+.3f} "
          f"(whole set, Spearman-Brown: {whole:+.3f}), sign {_agreement(*halves):.2f}")  # fmt: skip
    for subset, values in predicted.items():
        xs, ys = [values[i] for i in rows], [measured[i] for i in rows]
        clear_agreement = _agreement([values[i] for i in clear], [measured[i] for i in clear])
        stats[subset] = {"spearman": spearman(xs, ys), "sign_agreement": _agreement(xs, ys), "prompts": len(rows),
                         "sign_agreement_clear": clear_agreement, "prompts_clear": len(clear)}  # fmt: skip
        print(f"{subset}: Spearman {stats[subset]['spearman']:+.3f}, "
              f"sign agreement {stats[subset]['sign_agreement']:.2f} ({len(rows)} prompts); "
              f"{clear_agreement:.2f} on the {len(clear)} whose measured change exceeds 2 standard errors")  # fmt: skip
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.out:
        payload = {"args": vars(args), "alphas": train.alphas, "target_alphas": targets.alphas,
                   "target_index": target.index, "measured": measured, "standard_errors": errors,
                   "measured_halves": halves,
                   "predicted": predicted}  # fmt: skip
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(payload | {"stats": stats}, f, indent=1)
    engine.close()


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _agreement(xs: list[float], ys: list[float]) -> float:
    """Share of pairs with the same sign (nan for none)."""
    if not xs:
        return float("nan")
    return sum(_sign(x) == _sign(y) for x, y in zip(xs, ys, strict=True)) / len(xs)


def _standard_error(terms: torch.Tensor, sizes: list[int]) -> float:
    """Standard error of the mean of prompt-major terms: sqrt(sum over prompts of n_p var_p) / B."""
    variance = sum(len(part) * float(part.var()) for part in terms.split(sizes))
    return variance**0.5 / len(terms)


if __name__ == "__main__":
    main()
