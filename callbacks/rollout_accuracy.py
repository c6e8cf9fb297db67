"""Rollout-accuracy histograms: alpha per prompt of the GRPO rollouts, and of a fixed probe set (paper_spec §E.4)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from typing_extensions import override

from bridge_pl.analysis.accuracy import BINS, accuracy_histogram
from bridge_pl.analysis.plots import accuracy_figure
from bridge_pl.analysis.probe import sample_probe
from bridge_pl.data.prompt_sets import PromptSet, load_prompt_set
from callbacks._common import (
    analysis_dir,
    check_grpo_module,
    log_figure,
    log_scalars,
    probe_sampling,
    tensorboard_writers,
    write_json,
)

__all__ = ["RolloutAccuracyCallback"]


class RolloutAccuracyCallback(L.Callback):
    """Histogram of the rollout accuracy alpha over prompts, in the paper's bins {0}, (0,.2], ..., (.8,1), {1}.

    Two sources, each logged as ``rollout_accuracy/<source>/{informative_mass, mean_sqrt_var, mean, frac_<bin>}``
    scalars, an ``.../alpha`` TensorBoard histogram, a figure (``.../figure`` and a PNG) and a JSON file under
    ``<log dir>/rollout_accuracy/``:

    * ``train``: the GRPO rollouts themselves, pooled over the last `every_n_steps` rollout steps;
    * ``probe``: a fixed prompt set sampled with the current policy, once before training (step 0: the SFT
      model, the paper's Fig. 1 middle) and every `probe_every_n_steps` rollout steps.

    P(0 < alpha < 1) is the share of prompts that move the policy; E[sqrt(alpha (1 - alpha))] their weight.
    It only observes: probe sampling runs under a forked RNG and touches no gradient.

    Args:
        every_n_steps: Log the training histogram every n rollout steps (0: never).
        probe_path: Prompts (query, final_answer) of the probe set, e.g. ``data/rl_train``; None: no probe.
        probe_size: Use the first n prompts of `probe_path`.
        num_generations: Rollouts per probe prompt (the paper's analysis: 32).
        max_new_tokens: Longest probe rollout (default: the GRPO module's).
        temperature: Sampling temperature of the probe rollouts.
        at_train_start: Measure the probe before the first training step.
        probe_every_n_steps: Measure the probe again every n rollout steps (0: only at the start).
        seed: Sampling seed of the probe rollouts (the same prompts get the same random stream each time).

    Example::

        trainer:
          callbacks:
            - class_path: callbacks.rollout_accuracy.RolloutAccuracyCallback
              init_args: {every_n_steps: 10, probe_path: data/rl_train, probe_size: 64, num_generations: 16}
    """

    def __init__(
        self,
        every_n_steps: int = 10,
        probe_path: str | None = None,
        probe_size: int = 64,
        num_generations: int = 8,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        at_train_start: bool = True,
        probe_every_n_steps: int = 0,
        seed: int = 0,
    ) -> None:
        issues = [
            f"{name}={value}: must be >= {low}"
            for name, value, low in (
                ("every_n_steps", every_n_steps, 0),
                ("probe_size", probe_size, 1),
                ("num_generations", num_generations, 1),
                ("max_new_tokens", max_new_tokens or 1, 1),
                ("probe_every_n_steps", probe_every_n_steps, 0),
            )
            if value < low
        ]
        if temperature <= 0:
            issues.append(f"temperature={temperature}: must be > 0 (rollouts are sampled)")
        if issues:
            raise ValueError("RolloutAccuracyCallback: " + "; ".join(issues))
        self.every_n_steps, self.probe_path, self.probe_size = every_n_steps, probe_path, probe_size
        self.num_generations, self.max_new_tokens, self.temperature = num_generations, max_new_tokens, temperature
        self.at_train_start, self.probe_every_n_steps, self.seed = at_train_start, probe_every_n_steps, seed
        self._pooled: list[float] = []
        self._probe: PromptSet | None = None
        self.results: dict[str, dict[str, Any]] = {}  # source -> the last histogram

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_grpo_module(self, pl_module)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.probe_path and self.at_train_start:
            self.measure_probe(trainer, pl_module)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        record = pl_module.last_rollout
        if record is not None:
            self._pooled += record.rollout_accuracy.tolist()
        step = pl_module.rollout_step
        if self.every_n_steps and step % self.every_n_steps == 0 and self._pooled:
            self._log(trainer, "train", self._pooled, step)
            self._pooled = []
        if self.probe_path and self.probe_every_n_steps and step % self.probe_every_n_steps == 0:
            self.measure_probe(trainer, pl_module)

    def measure_probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Sample the probe set with the current policy and log its histogram; returns it."""
        if self._probe is None:
            self._probe = load_prompt_set(self.probe_path, pl_module.tokenizer, self.probe_size)
        sampling = probe_sampling(pl_module, self.temperature, self.max_new_tokens)
        with torch.random.fork_rng(devices=[]):
            rollouts = sample_probe(pl_module.sample, self._probe, self.num_generations, sampling, self.seed)
        return self._log(trainer, "probe", rollouts.alphas, pl_module.rollout_step)

    def _log(self, trainer: L.Trainer, source: str, alphas: list[float], step: int) -> dict[str, Any]:
        hist = accuracy_histogram(alphas)
        self.results[source] = hist
        prefix = f"rollout_accuracy/{source}"
        metrics = {
            f"{prefix}/informative_mass": hist["informative_mass"],
            f"{prefix}/mean_sqrt_var": hist["mean_sqrt_var"],
            f"{prefix}/mean": hist["mean_accuracy"],
        } | {f"{prefix}/frac_{label}": hist["fractions"][label] for label in BINS}
        log_scalars(trainer, metrics, step)
        for writer in tensorboard_writers(trainer):
            writer.add_histogram(f"{prefix}/alpha", torch.tensor(alphas), global_step=step, bins=20)
        out = analysis_dir(trainer, "rollout_accuracy")
        if trainer.is_global_zero:
            write_json(out / f"{source}_step_{step}.json", {"step": step, "alphas": alphas, **hist})
        title = f"rollout accuracy ({source}, step {step})"
        log_figure(trainer, f"{prefix}/figure", lambda: accuracy_figure({source: hist}, title), step,
                   out / f"{source}_step_{step}.png")  # fmt: skip
        return hist
