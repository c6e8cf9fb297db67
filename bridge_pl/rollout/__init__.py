"""Rollout engines behind one interface: `HFEngine` (transformers generate, everywhere) and `VLLMEngine`.

`bridge_pl.rollout.vllm` is the only module that imports vllm, and only when a `VLLMEngine` starts, so
``import bridge_pl.rollout`` works without vllm installed. YAML names the engines by these paths
(``class_path: bridge_pl.rollout.HFEngine``).
"""

from bridge_pl.rollout.base import Completion, RolloutEngine, SamplingConfig, cut_at_stop
from bridge_pl.rollout.factory import EngineKind, bound_engine, build_engine
from bridge_pl.rollout.hf import HFEngine
from bridge_pl.rollout.vllm import VLLMEngine
from bridge_pl.rollout.weight_sync import clean_name, hf_state_dict

__all__ = [
    "Completion",
    "EngineKind",
    "HFEngine",
    "RolloutEngine",
    "SamplingConfig",
    "VLLMEngine",
    "bound_engine",
    "build_engine",
    "clean_name",
    "cut_at_stop",
    "hf_state_dict",
]
