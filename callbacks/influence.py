"""Per-step influence of GRPO updates on a probe set, by rollout-accuracy bin (paper_spec §E, Fig. 1 right)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from bridge_pl.analysis.accuracy import BINS, accuracy_histogram
from bridge_pl.analysis.influence import GradientSpace, influence_summary, select_parameters
from bridge_pl.analysis.plots import influence_figure
from bridge_pl.analysis.probe import measure_influence, sample_probe
from bridge_pl.data.prompt_sets import PromptSet, load_prompt_set
from callbacks._common import (
    analysis_dir,
    check_grpo_module,
    log_figure,
    log_scalars,
    probe_sampling,
    sharded,
    write_json,
)

__all__ = ["InfluenceCallback"]

HEADLINE = ("total", "co_influence", "k_plus", "k_minus", "target_grad_norm")
STATS = ("influence_sum", "influence_mean", "co_influence_mean", "k_plus_mean", "k_minus_mean")


class InfluenceCallback(L.Callback):
    """Estimate how much one GRPO step on each probe prompt would raise the reward on a target set.

    For each training-probe prompt q (N rollouts, rollout accuracy alpha): G+ / G- are the mean gradients of the
    length-normalised log-likelihood of its right / wrong rollouts; T is the mean of (r - mean r) times that
    gradient over the target set's rollouts. Logged at each measurement (rollout step s):

    * ``influence/total``: mean over probe prompts of I(q) = <T, sqrt(alpha (1 - alpha)) (G+ - G-)>, the
      first-order change of the target reward per unit learning rate of one step on the probe batch;
    * ``influence/co_influence``: mean C(q) = <T, G+ - G-> over prompts with 0 < alpha < 1; ``influence/k_plus``,
      ``influence/k_minus``: mean <T, G+>, <T, G->; ``influence/target_grad_norm``; ``influence/informative_mass``;
    * ``influence/<stat>/<bin>`` for the stats influence_sum, influence_mean, co_influence_mean, k_plus_mean and
      k_minus_mean per alpha bin; a figure (``influence/figure`` and a PNG) and the per-prompt values as JSON
      under ``<log dir>/influence/``.

    Gradients are exact on the chosen parameter subset, or count-sketched (`sketch_dim`). It only observes:
    gradients come from ``torch.autograd.grad`` (no ``.grad`` is touched), sampling runs under a forked RNG.
    Under FSDP the callback is skipped with a warning (its gradients would be shards).

    Args:
        probe_path: Training-distribution prompts (e.g. ``data/rl_train``; use rows the run does not train on).
        target_path: Target prompts whose reward the step should raise (e.g. ``data/rl_val`` or ``data/test_id``).
        probe_size: First n prompts of probe_path.
        target_size: First n prompts of target_path.
        num_generations: Rollouts per prompt (both sets).
        max_new_tokens: Longest rollout (default: the GRPO module's).
        temperature: Sampling temperature.
        every_n_steps: Measure every n rollout steps (0: only at the start).
        at_train_start: Measure before the first step (the SFT model).
        parameters: "last_layers" (output layer, final norm, last `num_layers` blocks), "lm_head" or "all"
            (use "all" with LoRA: only the adapters are trainable).
        num_layers: Decoder layers of "last_layers".
        sketch_dim: Count-sketch the gradients to this size (None: exact; use 4096-65536 for big subsets).
        micro_batch_size: Sequences per backward pass.
        seed: Sampling seed (the probe gets the same random stream at every measurement).

    Example::

        trainer:
          callbacks:
            - class_path: callbacks.influence.InfluenceCallback
              init_args: {probe_path: data/rl_probe, target_path: data/rl_val, probe_size: 32, every_n_steps: 20}
    """

    def __init__(
        self,
        probe_path: str,
        target_path: str,
        probe_size: int = 32,
        target_size: int = 32,
        num_generations: int = 8,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        every_n_steps: int = 10,
        at_train_start: bool = True,
        parameters: Literal["last_layers", "lm_head", "all"] = "last_layers",
        num_layers: int = 2,
        sketch_dim: int | None = None,
        micro_batch_size: int = 8,
        seed: int = 0,
    ) -> None:
        issues = [
            f"{name}={value}: must be >= {low}"
            for name, value, low in (
                ("probe_size", probe_size, 1),
                ("target_size", target_size, 1),
                ("num_generations", num_generations, 2),
                ("max_new_tokens", max_new_tokens or 1, 1),
                ("every_n_steps", every_n_steps, 0),
                ("num_layers", num_layers, 0),
                ("sketch_dim", sketch_dim or 1, 1),
                ("micro_batch_size", micro_batch_size, 1),
            )
            if value < low
        ]
        if temperature <= 0:
            issues.append(f"temperature={temperature}: must be > 0 (rollouts are sampled)")
        if issues:
            raise ValueError("InfluenceCallback: " + "; ".join(issues))
        self.probe_path, self.target_path = probe_path, target_path
        self.probe_size, self.target_size, self.num_generations = probe_size, target_size, num_generations
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.every_n_steps, self.at_train_start = every_n_steps, at_train_start
        self.parameters, self.num_layers, self.sketch_dim = parameters, num_layers, sketch_dim
        self.micro_batch_size, self.seed = micro_batch_size, seed
        self._sets: tuple[PromptSet, PromptSet] | None = None
        self._space: GradientSpace | None = None
        self.results: dict[str, Any] | None = None  # the last measurement

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_grpo_module(self, pl_module)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_train_start:
            self.measure(trainer, pl_module)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and pl_module.rollout_step % self.every_n_steps == 0:
            self.measure(trainer, pl_module)

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """Sample both sets, compute the influence terms, log them; returns the results (None when skipped)."""
        if sharded(trainer):
            rank_zero_warn("InfluenceCallback skipped: under FSDP the parameters are shards")
            return None
        probe, target = self._load(pl_module)
        sampling = probe_sampling(pl_module, self.temperature, self.max_new_tokens)
        model = pl_module.model
        was_training = model.training
        with torch.random.fork_rng(devices=[]):
            train = sample_probe(pl_module.sample, probe, self.num_generations, sampling, self.seed)
            targets = sample_probe(pl_module.sample, target, self.num_generations, sampling, self.seed + 1)
            model.eval()
            try:
                pad = pl_module.tokenizer.pad_token_id
                pad = pl_module.tokenizer.eos_token_id if pad is None else pad
                terms, t_vector = measure_influence(model, self._space, train, targets, pad,
                                                    micro_batch_size=self.micro_batch_size)  # fmt: skip
            finally:
                model.train(was_training)
        return self._log(trainer, pl_module.rollout_step, terms, t_vector, train.alphas)

    def _load(self, pl_module: L.LightningModule) -> tuple[PromptSet, PromptSet]:
        if self._sets is None:
            tokenizer = pl_module.tokenizer
            self._sets = (
                load_prompt_set(self.probe_path, tokenizer, self.probe_size),
                load_prompt_set(self.target_path, tokenizer, self.target_size),
            )
            params = select_parameters(pl_module.model, self.parameters, self.num_layers)
            self._space = GradientSpace(params, sketch_dim=self.sketch_dim, seed=self.seed)
        return self._sets

    def _log(self, trainer, step: int, terms, t_vector: torch.Tensor, alphas: list[float]) -> dict[str, Any]:
        summary = influence_summary(terms, t_vector)
        by_bin = summary["by_bin"]
        metrics = {f"influence/{key}": summary[key] for key in HEADLINE if summary[key] is not None}
        metrics["influence/informative_mass"] = accuracy_histogram(alphas)["informative_mass"]
        for label in BINS:
            for stat in STATS:
                value = by_bin[label][stat]
                if value is not None and by_bin[label]["prompts"]:
                    metrics[f"influence/{stat}/{label}"] = value
        log_scalars(trainer, metrics, step)
        self.results = {"step": step, "metrics": metrics, "by_bin": by_bin, "prompts": [asdict(t) for t in terms]}
        out = analysis_dir(trainer, "influence")
        if trainer.is_global_zero:
            write_json(out / f"step_{step}.json", self.results)
        log_figure(trainer, "influence/figure", lambda: influence_figure(by_bin, f"per-step influence, step {step}"),
                   step, out / f"step_{step}.png")  # fmt: skip
        return self.results
