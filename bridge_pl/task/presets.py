"""The paper's dataset splits as presets: seed, size, difficulty and answer style (paper_spec §A.7).

| split      | seed | size   | ops          | answers   |
|------------|------|--------|--------------|-----------|
| sft        | 100  | 2000   | 15-20        | CoT       |
| rl_train   | 200  | 10000  | 15-20        | no-CoT    |
| rl_val     | 300  | 500    | 21-25        | no-CoT    |
| test_id    | 400  | 500    | exactly 20   | no-CoT    |
| test_ood   | 400  | 500    | exactly 25   | no-CoT    |

Sets with min_op > 20 drop 60% of the zero answers (the generator's default rule).

The ``tiny_*`` splits are the same design scaled down for the embedded tiny model on a CPU (the quick start and
the tiny replication): small graphs (ops 2-4, at most 6 instance parameters) and arithmetic modulo 23, so a
3M-parameter model learns the task in minutes and GRPO has right and wrong rollouts to learn from.

| split          | seed | size | ops          | answers |
|----------------|------|------|--------------|---------|
| tiny_sft       | 1100 | 4000 | 2-4          | CoT     |
| tiny_rl_train  | 1200 | 4000 | 2-4          | no-CoT  |
| tiny_rl_val    | 1300 | 200  | 4-5          | no-CoT  |
| tiny_test_id   | 1400 | 500  | exactly 4    | no-CoT  |
| tiny_test_ood  | 1400 | 500  | exactly 5    | no-CoT  |
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
TINY = GeneratorConfig(min_op=2, max_op=4, max_instance_params=6, modulus=23)
SPLITS |= {
    "tiny_sft": SplitPreset("tiny_sft", 1100, 4000, TINY, cot=True),
    "tiny_rl_train": SplitPreset("tiny_rl_train", 1200, 4000, TINY),
    "tiny_rl_val": SplitPreset("tiny_rl_val", 1300, 200, replace(TINY, min_op=4, max_op=5)),
    "tiny_test_id": SplitPreset("tiny_test_id", 1400, 500, replace(TINY, min_op=4, max_op=4, force=True)),
    "tiny_test_ood": SplitPreset("tiny_test_ood", 1400, 500, replace(TINY, min_op=5, max_op=5, force=True)),
}


def split_preset(name: str) -> SplitPreset:
    """The named split preset (sft, rl_train, rl_val, test_id, test_ood, and their tiny_* versions)."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    return SPLITS[name]
