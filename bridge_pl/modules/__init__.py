"""LightningModules (the training recipes) and their settings: SFT and GRPO.

Imports torch, lightning and transformers: nothing in `bridge_pl.task`, `bridge_pl.augment` or the pure-Python
data modules imports this package. YAML configs name the classes by these paths
(``class_path: bridge_pl.modules.SFTModule``, ``class_path: bridge_pl.modules.GRPOModule``).
"""

from bridge_pl.modules.grpo import GRPOLossConfig, GRPOModule, RolloutConfig, RolloutRecord, UpdateConfig
from bridge_pl.modules.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler
from bridge_pl.modules.parallel import DecoderLayerPolicy
from bridge_pl.modules.policy import LoraConfig
from bridge_pl.modules.sft import SFTModule, token_cross_entropy

__all__ = [
    "DecoderLayerPolicy",
    "GRPOLossConfig",
    "GRPOModule",
    "LoraConfig",
    "OptimizerConfig",
    "RolloutConfig",
    "RolloutRecord",
    "SFTModule",
    "SchedulerConfig",
    "UpdateConfig",
    "build_optimizer",
    "build_scheduler",
    "token_cross_entropy",
]
