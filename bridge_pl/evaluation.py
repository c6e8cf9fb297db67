"""Evaluation of a model directory on iGSM prompt sets: greedy strict-match accuracy, mean@k and pass@k, per op.

The paper's metric (paper_spec §D.4) is greedy decoding, one answer per question, the chat template + "<think>"
prompt, stop at "</answer>" or eos, and the strict match of the first ``\\boxed{}`` (format bonus 0). With
``samples = k > 1`` each question also gets k sampled answers: mean@k is their mean accuracy, pass@j the
unbiased estimate 1 - C(k - c, j) / C(k, j) of "at least one of j samples is right" (Chen et al., 2021).

    results = evaluate("runs/grpo_tiny/hf_model", {"id": "data/tiny_test_id", "ood": "data/tiny_test_ood"})
    write_report(results, "runs/eval")    # eval.json and eval.md
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch

from bridge_pl.analysis.probe import load_probe
from bridge_pl.models.model_io import load_model, load_tokenizer
from bridge_pl.rollout.base import RolloutEngine, SamplingConfig
from bridge_pl.task.verify import extract_answer, strict_match_reward

__all__ = ["bound_engine", "evaluate", "evaluate_prompts", "make_engine", "markdown_table", "pass_at_k", "write_report"]

EXAMPLES_KEPT = 5


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are right: 1 - C(n - c, k) / C(n, k).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def make_engine(kind: Literal["hf", "vllm"], batch_size: int = 64, **vllm_kwargs: Any) -> RolloutEngine:
    """A rollout engine by name: "hf" (transformers generate) or "vllm" (in-process vLLM)."""
    from bridge_pl.rollout import HFEngine, VLLMEngine

    if kind == "hf":
        return HFEngine(batch_size=batch_size)
    if kind == "vllm":
        return VLLMEngine(**vllm_kwargs)
    raise ValueError(f"engine {kind!r}: choose hf or vllm")


def bound_engine(
    model_dir: str, engine: Literal["hf", "vllm"] = "hf", batch_size: int = 64, dtype: str = "float32"
) -> tuple[RolloutEngine, Any, torch.nn.Module]:
    """(engine, tokenizer, model): a saved model in eval mode on the best device, with an engine bound to it."""
    tokenizer = load_tokenizer(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, dtype=dtype).to(device).eval()
    rollout = make_engine(engine, batch_size=batch_size, dtype=dtype)
    rollout.bind(model, tokenizer, str(model_dir))
    return rollout, tokenizer, model


def evaluate_prompts(
    engine: RolloutEngine,
    tokenizer: Any,
    path: str,
    *,
    max_new_tokens: int = 1024,
    samples: int = 1,
    temperature: float = 1.0,
    batch_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score one prompt set (query, final_answer) with a bound engine; see the module docstring for the metrics."""
    probe = load_probe(path, tokenizer, limit)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
    sampled = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for first in range(0, len(probe.prompt_ids), batch_size):
        ids = probe.prompt_ids[first : first + batch_size]
        answers = engine.generate(ids, 1, greedy, seed=seed)
        draws = engine.generate(ids, samples, sampled, seed=seed + first + 1) if samples > 1 else None
        for offset, group in enumerate(answers):
            i = first + offset
            truth, completion = probe.ground_truth[i], group[0]
            row = {
                "index": i,
                "num_ops": probe.num_ops[i],
                "ground_truth": truth,
                "predicted": extract_answer(completion.text),
                "correct": strict_match_reward(completion.text, truth) == 1.0,
                "length": len(completion.token_ids),
                "truncated": completion.finish_reason == "length",
            }
            if draws is not None:
                row["sample_correct"] = sum(strict_match_reward(c.text, truth) == 1.0 for c in draws[offset])
            row["completion"] = completion.text
            rows.append(row)
    return _summary(path, rows, samples, time.perf_counter() - start)


def _summary(path: str, rows: list[dict[str, Any]], samples: int, seconds: float) -> dict[str, Any]:
    def block(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        out = {"problems": len(chosen), "accuracy": sum(r["correct"] for r in chosen) / len(chosen)}
        if samples > 1:
            out[f"mean@{samples}"] = sum(r["sample_correct"] for r in chosen) / (samples * len(chosen))
            for k in sorted({1, samples}):
                out[f"pass@{k}"] = sum(pass_at_k(samples, r["sample_correct"], k) for r in chosen) / len(chosen)
        return out

    by_op: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_op[row["num_ops"]].append(row)
    return {
        "path": str(path),
        **block(rows),
        "mean_length": sum(r["length"] for r in rows) / len(rows),
        "truncated": sum(r["truncated"] for r in rows) / len(rows),
        "seconds": seconds,
        "per_op": {str(op): block(chosen) for op, chosen in sorted(by_op.items())},
        "examples": [r["completion"] for r in rows[:EXAMPLES_KEPT]],
        "rows": [{k: v for k, v in r.items() if k != "completion"} for r in rows],
    }


def evaluate(
    model_dir: str,
    datasets: dict[str, str],
    *,
    engine: Literal["hf", "vllm"] = "hf",
    max_new_tokens: int = 1024,
    samples: int = 1,
    temperature: float = 1.0,
    batch_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
    dtype: Literal["float32", "bfloat16"] = "float32",
) -> dict[str, Any]:
    """Evaluate a local Hugging Face model directory on named prompt sets (e.g. {"id": ..., "ood": ...})."""
    rollout, tokenizer, _ = bound_engine(model_dir, engine, batch_size, dtype)
    results = {
        "model": str(model_dir),
        "engine": engine,
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "splits": {
            name: evaluate_prompts(
                rollout,
                tokenizer,
                path,
                max_new_tokens=max_new_tokens,
                samples=samples,
                temperature=temperature,
                batch_size=batch_size,
                limit=limit,
                seed=seed,
            )  # fmt: skip
            for name, path in datasets.items()
        },
    }
    rollout.close()
    return results


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table: one row per split, greedy accuracy (and mean@k / pass@k), per-op accuracy."""
    samples = results["samples"]
    extra = [f"mean@{samples}", *(f"pass@{k}" for k in sorted({1, samples}))] if samples > 1 else []
    head = ["split", "problems", "greedy accuracy", *extra, "per op (greedy)"]
    lines = [f"Model `{results['model']}` ({results['engine']} engine)", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    for name, split in results["splits"].items():
        per_op = ", ".join(f"{op}: {100 * v['accuracy']:.1f}" for op, v in split["per_op"].items())
        cells = [name, str(split["problems"]), f"{100 * split['accuracy']:.1f}%"]
        cells += [f"{100 * split[key]:.1f}%" for key in extra] + [per_op]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``eval.json`` and ``eval.md`` into `out_dir`; returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "eval.md").write_text(markdown_table(results), encoding="utf-8")
    return out
