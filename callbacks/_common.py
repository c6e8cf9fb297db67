"""What the analysis callbacks share: the GRPO module they observe, TensorBoard writers, output files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn

from bridge_pl.analysis.plots import matplotlib_available, save_figure
from bridge_pl.rollout.base import SamplingConfig

__all__ = [
    "analysis_dir",
    "check_grpo_module",
    "log_figure",
    "log_scalars",
    "sharded",
    "tensorboard_writers",
    "write_json",
]

REQUIRED = ("sample", "model", "tokenizer", "rollout", "rollout_step", "last_rollout")


def check_grpo_module(callback: L.Callback, pl_module: L.LightningModule) -> None:
    """Refuse a module without what the callback reads (a `bridge_pl.modules.GRPOModule` has all of it)."""
    missing = [name for name in REQUIRED if not hasattr(pl_module, name)]
    if missing:
        raise TypeError(
            f"{type(callback).__name__} observes GRPO training: {type(pl_module).__name__} lacks {', '.join(missing)}; "
            "use it with model.class_path bridge_pl.modules.GRPOModule"
        )


def sharded(trainer: L.Trainer) -> bool:
    """Whether the strategy shards parameters (the gradient analyses then skip, with a warning)."""
    return isinstance(trainer.strategy, FSDPStrategy | ModelParallelStrategy)


def tensorboard_writers(trainer: L.Trainer) -> list[Any]:
    """The SummaryWriters of the trainer's TensorBoard loggers (rank 0 only; [] elsewhere)."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def log_scalars(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    """Write scalars to every logger at `step` (rank 0)."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)


def analysis_dir(trainer: L.Trainer, name: str) -> Path:
    """``<log dir>/<name>/`` (created); every rank must call it, because log_dir broadcasts from rank 0."""
    path = Path(trainer.log_dir or trainer.default_root_dir) / name
    if trainer.is_global_zero:
        path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload: Any) -> None:
    """Write `payload` as indented JSON."""
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def log_figure(trainer: L.Trainer, tag: str, make_figure, step: int, png: Path) -> None:
    """Draw a figure (rank 0), add it to TensorBoard under `tag` and save it as `png`; skipped without matplotlib."""
    if not trainer.is_global_zero:
        return
    if not matplotlib_available():
        rank_zero_warn(f'{tag}: matplotlib is not installed, no figure drawn (pip install "bridge-pl[plot]")')
        return
    fig = make_figure()
    for writer in tensorboard_writers(trainer):
        writer.add_figure(tag, fig, global_step=step, close=False)
    save_figure(fig, png)


def probe_sampling(pl_module: L.LightningModule, temperature: float, max_new_tokens: int | None) -> SamplingConfig:
    """A probe's sampling: the GRPO rollouts' stop strings and length (unless it sets one), its own temperature.

    Probes sample the full tempered distribution (no top-p or top-k), whatever the rollouts truncate to: the
    rollout accuracy they measure is that of the policy itself.
    """
    rollout = pl_module.rollout.sampling
    length = max_new_tokens or rollout.max_new_tokens
    return replace(rollout, temperature=temperature, top_p=1.0, top_k=0, max_new_tokens=length)
