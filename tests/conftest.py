"""Shared fixtures and test doubles.

`model_dir` is a fresh tiny model (llama-1m, seed 0) per test module; modules that need another preset or
seed define their own. `loud_model_dir(preset)` builds a tiny model with large random weights, whose greedy and
sampled answers vary from token to token (a fresh one repeats one token).

`ScriptedEngine` is a rollout engine whose completions are fixed texts (real tokens of the real tokenizer), so
GRPO tests can choose the rewards: for prompt i it returns ``right_counts[i % len]`` right answers (the
number after "equals " in the question, boxed) and wrong ones for the rest of the group. Training and
scoring around it are the real code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bridge_pl.models.model_io import init_model_dir, load_model
from bridge_pl.rollout import Completion, RolloutEngine


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A fresh tiny model directory (llama-1m, seed 0) for the test module."""
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-1m")


@pytest.fixture(scope="session")
def loud_model_dir(tmp_path_factory):
    """preset -> the directory of a tiny model (seed 3) whose 2-D weights are redrawn from N(0, 0.3)."""

    def build(preset: str) -> Path:
        path = init_model_dir(tmp_path_factory.mktemp("model"), preset=preset, seed=3)
        model, generator = load_model(path), torch.Generator().manual_seed(0)
        with torch.no_grad():
            for weight in (p for p in model.parameters() if p.dim() == 2):
                weight.normal_(0, 0.3, generator=generator)
        model.save_pretrained(path)
        return path

    return build


@pytest.fixture()
def read_only_dir(tmp_path, monkeypatch) -> Path:
    """A directory nothing may be written into: mode 0o555, and os.access denies it too when root runs the tests
    (root ignores the mode bits, as in the CI container)."""
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access

        def access(path, mode, *args, **kwargs):
            inside = Path(path).absolute() == locked or locked in Path(path).absolute().parents
            return False if inside and mode & os.W_OK else real(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    yield locked
    locked.chmod(0o755)


ANSWER = "\nSo x = {v}.\n</think>\n<answer>\nThe final answer is \\boxed{{{v}}}.\n</answer>"


class ScriptedEngine(RolloutEngine):
    """Fixed completions with a chosen number of right answers per prompt."""

    def __init__(self, right_counts: tuple[int, ...] | None = None, logprobs: bool = False) -> None:
        super().__init__()
        self.right_counts = right_counts  # None: half of each group is right
        self.logprobs = logprobs  # made-up "engine" log-probs -6.5, -7, -7.5, -8, -6.5, ... (a train/engine mismatch)

    def _start(self, policy):
        pass

    def _push_weights(self, policy):
        pass

    def _generate(self, prompt_ids, n, sampling, seed):
        groups = []
        for i, ids in enumerate(prompt_ids):
            answer = self.tokenizer.decode(ids).split("equals ")[1][0]
            wrong = str((int(answer) + 1) % 10)
            right = n // 2 if self.right_counts is None else min(self.right_counts[i % len(self.right_counts)], n)
            texts = [ANSWER.format(v=answer)] * right + [ANSWER.format(v=wrong)] * (n - right)
            if self.right_counts is None:
                texts = [texts[(k // 2) + (k % 2) * right] for k in range(n)]  # alternate right, wrong
            groups.append([self._completion(t) for t in texts])
        return groups

    def _completion(self, text):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        logprobs = [-6.5 - 0.5 * (j % 4) for j in range(len(ids))] if self.logprobs else None
        return Completion(ids, self.tokenizer.decode(ids, skip_special_tokens=True), "stop", logprobs)


@pytest.fixture()
def scripted_engine():
    """The `ScriptedEngine` class."""
    return ScriptedEngine
