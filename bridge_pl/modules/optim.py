"""Optimizer and learning-rate schedule settings, and the functions that build them.

The defaults are the paper's SFT recipe (paper_spec §D.2): AdamW, lr 5e-6, betas (0.9, 0.95), weight decay
0.01 on every parameter, constant learning rate without warm-up. In YAML they are the nested groups
``model.init_args.optimizer`` and ``model.init_args.scheduler``::

    optimizer: {lr: 1.0e-3, weight_decay: 0.0}
    scheduler: {name: cosine, warmup_steps: 20, min_lr_ratio: 0.1}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["OptimizerConfig", "SchedulerConfig", "build_optimizer", "build_scheduler", "lr_multiplier"]


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW settings (the paper's SFT values by default)."""

    lr: float = 5e-6
    """Peak learning rate (the paper: 5e-6 for SFT of 1-3B models; a from-scratch tiny model wants ~1e-3)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW (beta1, beta2)."""
    weight_decay: float = 0.01
    """Decoupled weight decay, applied to every trainable parameter as in the paper's trainer."""
    eps: float = 1e-8
    """AdamW epsilon."""

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key (`key` is the group's own key) and the fix."""
        issues = []
        if not self.lr > 0:
            issues.append(f"{key}.lr={self.lr}: the learning rate must be > 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            issues.append(f"{key}.betas={list(self.betas)}: both betas must be in [0, 1)")
        if self.weight_decay < 0:
            issues.append(f"{key}.weight_decay={self.weight_decay}: must be >= 0 (0 turns it off)")
        if not self.eps > 0:
            issues.append(f"{key}.eps={self.eps}: must be > 0")
        return issues


@dataclass(frozen=True)
class SchedulerConfig:
    """Learning-rate schedule, stepped once per optimizer step (constant: the paper's SFT)."""

    name: Literal["constant", "cosine", "linear"] = "constant"
    """Shape after warm-up: flat, cosine decay or linear decay down to `min_lr_ratio` x lr at the last step."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from 0 to the peak learning rate."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the peak (cosine and linear only)."""

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key (`key` is the group's own key) and the fix."""
        issues = []
        if self.warmup_steps < 0:
            issues.append(f"{key}.warmup_steps={self.warmup_steps}: must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            issues.append(f"{key}.min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")
        return issues


# Checkpoints hold these settings (the module's hyper-parameters); plain data, so allow them under torch.load's
# default weights_only=True, which Lightning uses to resume (`bridge fit --ckpt_path ...`).
torch.serialization.add_safe_globals([OptimizerConfig, SchedulerConfig])


def build_optimizer(parameters: Iterable[torch.nn.Parameter], config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the trainable `parameters` (frozen ones, e.g. the base weights under LoRA, are skipped)."""
    trainable = [p for p in parameters if p.requires_grad]
    return torch.optim.AdamW(
        trainable, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay, eps=config.eps
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: SchedulerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR following `lr_multiplier`; `total_steps` is the number of optimizer steps of the run."""
    # A partial of a module-level function (not a lambda) so the scheduler state pickles into checkpoints.
    schedule = functools.partial(lr_multiplier, config=config, total_steps=max(int(total_steps), 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def lr_multiplier(step: int, config: SchedulerConfig, total_steps: int) -> float:
    """Learning rate at optimizer step `step` (0-based) as a fraction of the peak.

    >>> cfg = SchedulerConfig(name="linear", warmup_steps=2, min_lr_ratio=0.0)
    >>> [round(lr_multiplier(s, cfg, total_steps=6), 2) for s in range(7)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if step < config.warmup_steps:
        return step / config.warmup_steps
    if config.name == "constant":
        return 1.0
    decay_steps = max(total_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    if config.name == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape
