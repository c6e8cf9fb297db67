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
from typing import Any

from bridge_pl.data.encoding import check_model_dir
from bridge_pl.data.prompt_sets import PromptSet, load_prompt_set
from bridge_pl.rollout.base import RolloutEngine, SamplingConfig
from bridge_pl.rollout.factory import EngineKind, bound_engine
from bridge_pl.task.verify import extract_answer

__all__ = [
    "evaluate",
    "evaluate_prompts",
    "evaluate_split",
    "ensure_writable",
    "markdown_table",
    "pass_at_k",
    "split_metrics",
    "summarize",
    "write_report",
]

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


# ------------------------------------------------------------------------------------------------ the evaluator
def evaluate_prompts(
    engine: RolloutEngine,
    prompts: PromptSet,
    sampling: SamplingConfig,
    *,
    samples: int = 1,
    sampled: SamplingConfig | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Score every prompt of a set with a bound engine: one answer under `sampling` and, if asked, `samples` draws.

    The answer is judged by the prompt set's task (`Task.is_correct`: iGSM's is the paper's strict match of the
    first ``\\boxed{}``, format bonus 0). This is the one evaluator: `bridge eval`, GRPO validation and test,
    and `GreedyEvalCallback` all score through it.

    Args:
        engine: A bound rollout engine (anything with the `RolloutEngine.generate` call).
        prompts: The prompt set.
        sampling: How the scored answer is decoded (temperature 0: greedy, the paper's metric).
        samples: Sampled answers per prompt for mean@k / pass@k (1: none).
        sampled: How those are drawn (default: `sampling` at temperature 1).
        batch_size: Prompts per generate call.
        seed: Seed of the scored answers; batch b of the sampled draws uses ``seed + b * batch_size + 1``.

    Returns:
        One row per prompt: index, num_ops, ground_truth, predicted, correct, length, truncated, (sample_correct:
        how many of the `samples` draws are right, when samples > 1), completion.
    """
    if samples > 1 and sampled is None:
        sampled = SamplingConfig(1.0, sampling.top_p, sampling.top_k, sampling.max_new_tokens, sampling.stop)
    rows: list[dict[str, Any]] = []
    judge = prompts.task.is_correct
    for first in range(0, len(prompts.prompt_ids), batch_size):
        ids = prompts.prompt_ids[first : first + batch_size]
        answers = engine.generate(ids, 1, sampling, seed=seed)
        draws = engine.generate(ids, samples, sampled, seed=seed + first + 1) if samples > 1 else None
        for offset, group in enumerate(answers):
            i = first + offset
            truth, completion = prompts.ground_truth[i], group[0]
            row = {
                "index": prompts.index[i],
                "num_ops": prompts.num_ops[i],
                "ground_truth": truth,
                "predicted": extract_answer(completion.text),
                "correct": judge(completion.text, truth),
                "length": len(completion.token_ids),
                "truncated": completion.finish_reason == "length",
            }
            if draws is not None:
                row["sample_correct"] = sum(judge(c.text, truth) for c in draws[offset])
            row["completion"] = completion.text
            rows.append(row)
    return rows


def _accuracy_block(rows: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """Problems, accuracy and (samples > 1) mean@k, pass@1 and pass@k of some rows."""
    out = {"problems": len(rows), "accuracy": sum(r["correct"] for r in rows) / len(rows)}
    if samples > 1:
        out[f"mean@{samples}"] = sum(r["sample_correct"] for r in rows) / (samples * len(rows))
        for k in sorted({1, samples}):
            out[f"pass@{k}"] = sum(pass_at_k(samples, r["sample_correct"], k) for r in rows) / len(rows)
    return out


def _by_op(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    by_op: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_op[row["num_ops"]].append(row)
    return dict(sorted(by_op.items()))


def summarize(path: str, rows: list[dict[str, Any]], samples: int = 1, seconds: float = 0.0) -> dict[str, Any]:
    """The report of one prompt set (what eval.json holds per split): totals, per-op breakdown, rows, examples."""
    return {
        "path": str(path),
        **_accuracy_block(rows, samples),
        "mean_length": sum(r["length"] for r in rows) / len(rows),
        "truncated": sum(r["truncated"] for r in rows) / len(rows),
        "seconds": seconds,
        "per_op": {str(op): _accuracy_block(chosen, samples) for op, chosen in _by_op(rows).items()},
        "examples": [r["completion"] for r in rows[:EXAMPLES_KEPT]],
        "rows": [{k: v for k, v in r.items() if k != "completion"} for r in rows],
    }


def split_metrics(rows: list[dict[str, Any]], prefix: str, samples: int = 1) -> dict[str, float]:
    """The scalar metrics of scored rows under one naming scheme (TensorBoard): ``<prefix>/<metric>``.

    ``accuracy``, ``completion_length`` (mean tokens of the scored answers), ``accuracy_op_<n>`` per operation
    count, and with samples > 1 ``mean@k``, ``pass@1``, ``pass@k``.

    >>> rows = [{"num_ops": 2, "correct": True, "length": 4}, {"num_ops": 3, "correct": False, "length": 6}]
    >>> split_metrics(rows, "val")
    {'val/accuracy': 0.5, 'val/completion_length': 5.0, 'val/accuracy_op_2': 1.0, 'val/accuracy_op_3': 0.0}
    """
    block = _accuracy_block(rows, samples)
    metrics = {f"{prefix}/accuracy": block["accuracy"]}
    metrics[f"{prefix}/completion_length"] = sum(r["length"] for r in rows) / len(rows)
    metrics |= {f"{prefix}/{k}": v for k, v in block.items() if "@" in k}
    for op, chosen in _by_op(rows).items():
        metrics[f"{prefix}/accuracy_op_{op}"] = sum(r["correct"] for r in chosen) / len(chosen)
    return metrics


# ------------------------------------------------------------------------------------------------ bridge eval
def evaluate_split(
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
    """Greedy-score one prompt set from disk (and sample it `samples` times) and summarize it (`summarize`)."""
    prompts = load_prompt_set(path, tokenizer, limit)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
    sampled = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    start = time.perf_counter()
    rows = evaluate_prompts(engine, prompts, greedy, samples=samples, sampled=sampled, batch_size=batch_size, seed=seed)
    return summarize(path, rows, samples, time.perf_counter() - start)


def evaluate(
    model_dir: str,
    datasets: dict[str, str],
    *,
    engine_kind: EngineKind = "hf",
    max_new_tokens: int = 1024,
    samples: int = 1,
    temperature: float = 1.0,
    batch_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Evaluate a local Hugging Face model directory on named prompt sets (e.g. {"id": ..., "ood": ...}).

    The directory is checked (config, weights, tokenizer, remote code) before anything loads; a bad one raises
    a `ModelDirError` (a ValueError) that says what is missing and how to fix it.
    """
    check_model_dir(model_dir, trust_remote_code=trust_remote_code)
    engine, tokenizer, _ = bound_engine(
        model_dir, engine_kind, batch_size=batch_size, dtype=dtype, trust_remote_code=trust_remote_code
    )
    splits = {
        name: evaluate_split(
            engine,
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
    }
    engine.close()
    results = {"model": str(model_dir), "engine": engine_kind, "samples": samples, "max_new_tokens": max_new_tokens}
    return results | {"splits": splits}


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


def ensure_writable(out_dir: str | Path) -> Path:
    """Create `out_dir` if needed and prove it writable with a probe file, before any expensive work.

    Args:
        out_dir: The directory reports will be written to.

    Returns:
        The directory as a Path.

    Raises:
        ValueError: Naming the path and the fix, when it cannot be created or written.
    """
    out = Path(out_dir)
    probe = out / ".bridge-write-probe"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"output directory {out} is not writable ({err.strerror or err}); pass a writable --out directory"
        ) from err
    return out


def write_report(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``eval.json`` and ``eval.md`` into `out_dir`; returns the directory.

    Raises:
        ValueError: Naming the path and the fix, when the directory cannot be created or written.
    """
    out = ensure_writable(out_dir)
    try:
        (out / "eval.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        (out / "eval.md").write_text(markdown_table(results), encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot write the report into {out} ({err.strerror or err}); pass a writable --out") from err
    return out
