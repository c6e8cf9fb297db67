"""Answer augmentation: BRIDGE behavior injection and the PP-Aug / RC-Aug baselines (pure Python, no torch)."""

from bridge_pl.augment.baselines import permute_premises, random_solution_order, reorder_solution
from bridge_pl.augment.bridge import PRESETS, BehaviorConfig, BehaviorStats, behavior_preset, render_bridge_answer

__all__ = [
    "PRESETS",
    "BehaviorConfig",
    "BehaviorStats",
    "behavior_preset",
    "permute_premises",
    "random_solution_order",
    "render_bridge_answer",
    "reorder_solution",
]
