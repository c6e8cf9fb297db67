"""The paper's dataset splits as presets: seed, size, difficulty and answer style (paper_spec §A.7).

| split      | seed | size   | ops          | answers   |
|------------|------|--------|--------------|-----------|
| sft        | 100  | 2000   | 15-20        | CoT       |
| rl_train   | 200  | 10000  | 15-20        | no-CoT    |
| rl_val     | 300  | 500    | 21-25        | no-CoT    |
| test_id    | 400  | 500    | exactly 20   | no-CoT    |
| test_ood   | 400  | 500    | exactly 25   | no-CoT    |

Sets with min_op > 20 drop 60% of the zero answers (the generator's default rule).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bridge_pl.task.generator import GeneratorConfig

__all__ = ["SPLITS", "SplitPreset", "split_preset"]


@dataclass(frozen=True)
class SplitPreset:
    """A named dataset split.

    Attributes:
        name: The split's name.
        seed: Seed of the problem stream.
        size: Number of problems.
        generator: Difficulty knobs.
        cot: Whether the split's answers are chain-of-thought SFT targets (else no-CoT reference answers).
    """

    name: str
    seed: int
    size: int
    generator: GeneratorConfig
    cot: bool = False

    def with_size(self, size: int) -> SplitPreset:
        """The same split with another number of problems (the first `size` of the same stream)."""
        return replace(self, size=size)


SPLITS: dict[str, SplitPreset] = {
    "sft": SplitPreset("sft", 100, 2000, GeneratorConfig(min_op=15, max_op=20), cot=True),
    "rl_train": SplitPreset("rl_train", 200, 10000, GeneratorConfig(min_op=15, max_op=20)),
    "rl_val": SplitPreset("rl_val", 300, 500, GeneratorConfig(min_op=21, max_op=25)),
    "test_id": SplitPreset("test_id", 400, 500, GeneratorConfig(min_op=20, max_op=20, force=True)),
    "test_ood": SplitPreset("test_ood", 400, 500, GeneratorConfig(min_op=25, max_op=25, force=True)),
}


def split_preset(name: str) -> SplitPreset:
    """The named split preset (sft, rl_train, rl_val, test_id, test_ood)."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    return SPLITS[name]
