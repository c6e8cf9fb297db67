"""Per-step influence of GRPO updates on a probe set, by rollout-accuracy bin (paper_spec §E, Fig. 1 right)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from bridge_pl.analysis.accuracy import BINS, accuracy_histogram
from bridge_pl.analysis.influence import (
    GradientSpace,
    alpha_bin_tag,
    influence_history_figure,
    influence_summary,
    select_parameters,
)
from bridge_pl.analysis.plots import influence_figure
from bridge_pl.analysis.probe import ProbeRollouts, measure_influence, sample_probe
from bridge_pl.data.prompt_sets import PromptSet, load_prompt_set
from callbacks._common import (
    analysis_dir,
    check_grpo_module,
    log_figure,
    log_scalars,
    probe_sampling,
    write_json,
)

__all__ = ["InfluenceCallback"]

HEADLINE = ("total", "co_influence", "k_plus", "k_minus", "target_grad_norm")
STATS = ("influence_sum", "influence_mean", "co_influence_mean", "k_plus_mean", "k_minus_mean")


class InfluenceCallback(L.Callback):
    """Estimate how much one GRPO step on each probe prompt would raise the reward on a target set.

    For each training-probe prompt q (N rollouts, rollout accuracy alpha): G+ / G- are the mean gradients of the
    length-normalised log-likelihood of its right / wrong rollouts (the GRPO loss's token mean); T is the mean of
    (r - mean r) times the gradient of log pi(o' | q') over the target set's rollouts (the gradient of its expected
    reward), so lr x I(q) is the predicted change of the target reward. Logged at each measurement (rollout step s):

    * ``influence/total``: mean over probe prompts of I(q) = <T, sqrt(alpha (1 - alpha)) (G+ - G-)>, the
      first-order change of the target reward per unit learning rate of one step on the probe batch;
    * ``influence/co_influence``: mean C(q) = <T, G+ - G-> over prompts with 0 < alpha < 1; ``influence/k_plus``,
      ``influence/k_minus``: mean <T, G+>, <T, G->; ``influence/target_grad_norm``; ``influence/informative_mass``;
    * ``influence/alpha_bin_<lo>_<hi>`` (``alpha_bin_0``, ``alpha_bin_0_0.2``, ..., ``alpha_bin_0.8_1``,
      ``alpha_bin_1``): the sum of I(q) over the bin's probe prompts (0 for an empty bin), i.e. the bin's share of
      ``influence/total`` times probe_size: one curve per bin over the whole run;
    * ``influence/<stat>/<bin>`` for the stats influence_sum, influence_mean, co_influence_mean, k_plus_mean and
      k_minus_mean per alpha bin (non-empty bins); ``timing/influence_s``: the measurement's wall time;
    * figures: ``influence/figure`` (this measurement by bin) and ``influence/over_training`` (the bins' sums at
      every measurement so far), as TensorBoard images and PNGs, and the per-prompt values as JSON
      (``step_<s>.json``, ``history.json``) under ``<log dir>/influence/``.

    Gradients are exact on the chosen parameter subset, or count-sketched (`sketch_dim`). It only observes:
    gradients come from ``torch.autograd.grad``, sampling runs under a forked RNG. Under FSDP2
    (`ModelParallelStrategy`) every rank samples the probe (the engine's collectives need all of them), takes
    rank 0's rollouts, and computes the gradients of its own shards with ``backward()`` (the ``.grad`` fields
    are put back afterwards); the shards' inner products are summed over ranks, so the result equals a
    one-process measurement of the same rollouts. Each rank does the whole probe: the cost does not shrink with
    more ranks. Under FSDP1 (`FSDPStrategy`, flat parameters) it is skipped with a warning.

    Args:
        probe_path: Training-distribution prompts (None: the data module's ``train_path``; better, rows the run
            does not train on).
        target_path: Target prompts whose reward the step should raise (None: the data module's ``val_path``, else
            its ``train_path``; e.g. ``data/rl_val`` or ``data/test_id``).
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
        probe_path: str | None = None,
        target_path: str | None = None,
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
        self.history: list[dict[str, Any]] = []  # every measurement's step, total and sums by bin (checkpointed)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_grpo_module(self, pl_module)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_train_start and not any(row["step"] == pl_module.rollout_step for row in self.history):
            self.measure(trainer, pl_module)  # (a resumed run has measured this step already)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and pl_module.rollout_step % self.every_n_steps == 0:
            self.measure(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """Sample both sets, compute the influence terms, log them; returns the results (None when skipped)."""
        if isinstance(trainer.strategy, FSDPStrategy):
            rank_zero_warn("InfluenceCallback skipped: FSDP1 holds flat parameter shards; use ModelParallelStrategy")
            return None
        start = time.perf_counter()
        _reshard(pl_module.model)  # FSDP2 leaves the root unsharded after a forward (rollouts, validation)
        probe, target = self._load(trainer, pl_module)
        sampling = probe_sampling(pl_module, self.temperature, self.max_new_tokens)
        model = pl_module.model
        was_training = model.training
        with torch.random.fork_rng(devices=[]):
            train = sample_probe(pl_module.sample, probe, self.num_generations, sampling, self.seed)
            targets = sample_probe(pl_module.sample, target, self.num_generations, sampling, self.seed + 1)
            train, targets = _same_on_every_rank(trainer, train, targets)
            model.eval()
            try:
                pad = pl_module.tokenizer.pad_token_id
                pad = pl_module.tokenizer.eos_token_id if pad is None else pad
                terms, t_vector = measure_influence(model, self._space, train, targets, pad,
                                                    micro_batch_size=self.micro_batch_size)  # fmt: skip
                t_norm = self._space.norm(t_vector)
            finally:
                model.train(was_training)
        seconds = time.perf_counter() - start
        return self._log(trainer, pl_module.rollout_step, terms, t_vector, t_norm, train.alphas, seconds)

    def _load(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[PromptSet, PromptSet]:
        if self._sets is None:
            paths = getattr(trainer.datamodule, "paths", None) or {}
            probe_path = self.probe_path or paths.get("train")
            target_path = self.target_path or paths.get("val") or paths.get("train")
            if not probe_path or not target_path:
                raise ValueError(
                    "InfluenceCallback: set init_args.probe_path and init_args.target_path (the data module "
                    f"{type(trainer.datamodule).__name__} names no train_path / val_path to default to)"
                )
            tokenizer = pl_module.tokenizer
            self._sets = (
                load_prompt_set(probe_path, tokenizer, self.probe_size),
                load_prompt_set(target_path, tokenizer, self.target_size),
            )
            params = select_parameters(pl_module.model, self.parameters, self.num_layers)
            self._space = GradientSpace(params, sketch_dim=self.sketch_dim, seed=self.seed)
        return self._sets

    def _log(self, trainer, step: int, terms, t_vector, t_norm: float, alphas, seconds: float) -> dict[str, Any]:
        summary = influence_summary(terms, t_vector, target_norm=t_norm)
        by_bin = summary["by_bin"]
        metrics = {f"influence/{key}": summary[key] for key in HEADLINE if summary[key] is not None}
        metrics["influence/informative_mass"] = accuracy_histogram(alphas)["informative_mass"]
        metrics |= {f"influence/{alpha_bin_tag(label)}": by_bin[label]["influence_sum"] for label in BINS}
        for label in BINS:
            for stat in STATS:
                value = by_bin[label][stat]
                if value is not None and by_bin[label]["prompts"]:
                    metrics[f"influence/{stat}/{label}"] = value
        metrics["timing/influence_s"] = seconds
        log_scalars(trainer, metrics, step)
        self.results = {"step": step, "metrics": metrics, "by_bin": by_bin, "prompts": [asdict(t) for t in terms]}
        self.history = [row for row in self.history if row["step"] != step]
        self.history.append({"step": step, "total": summary["total"], "seconds": seconds,
                             "influence_sum": {label: by_bin[label]["influence_sum"] for label in BINS},
                             "prompts": {label: by_bin[label]["prompts"] for label in BINS}})  # fmt: skip
        out = analysis_dir(trainer, "influence")
        if trainer.is_global_zero:
            write_json(out / f"step_{step}.json", self.results)
            write_json(out / "history.json", self.history)
        log_figure(trainer, "influence/figure", lambda: influence_figure(by_bin, f"per-step influence, step {step}"),
                   step, out / f"step_{step}.png")  # fmt: skip
        log_figure(trainer, "influence/over_training", lambda: influence_history_figure(self.history), step,
                   out / "over_training.png")  # fmt: skip
        return self.results


def _reshard(model: torch.nn.Module) -> None:
    """Put every FSDP2 unit of `model` back in its sharded state, so its parameters are the DTensor shards."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _same_on_every_rank(trainer: L.Trainer, *rollouts: ProbeRollouts) -> tuple[ProbeRollouts, ...]:
    """Rank 0's rollouts on every rank (sharded gradients need the same backward passes everywhere)."""
    if trainer.world_size == 1:
        return rollouts
    shared = trainer.strategy.broadcast([(r.completions, r.correct) for r in rollouts], src=0)
    return tuple(ProbeRollouts(r.probe, c, ok) for r, (c, ok) in zip(rollouts, shared, strict=True))
