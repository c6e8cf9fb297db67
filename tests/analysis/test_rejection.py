"""Rejection-sampling SFT data: which rollouts are kept, and the dataset written from them (scripted rollouts)."""

from __future__ import annotations

import pytest

from bridge_pl.analysis.rejection import RejectionSettings, rejection_sample, select_rollouts
from bridge_pl.data.io import read_dataset, read_dataset_config
from bridge_pl.data.pipeline import generate_dataset, generation_plan, verify_dataset
from bridge_pl.models.model_io import load_tokenizer
from bridge_pl.rollout import Completion, RolloutEngine


class OracleEngine(RolloutEngine):
    """Prompt i gets right_counts[i] right answers (its true final answer, boxed), then wrong ones; one of the right
    ones is cut at max_new_tokens when `cut_first` is set."""

    def __init__(self, truths: list[int], right_counts: list[int], cut_first: bool = False) -> None:
        super().__init__()
        self.truths, self.right_counts, self.cut_first = truths, right_counts, cut_first

    def _start(self, policy):
        pass

    def _push_weights(self, policy):
        pass

    def _generate(self, prompt_ids, n, sampling, seed):
        groups = []
        for i, _ in enumerate(prompt_ids):
            truth, right = self.truths[i], self.right_counts[i]
            texts = [f"\nStep {k}.\n</think>\n<answer>\nThe final answer is \\boxed{{{truth}}}.\n</answer>"
                     for k in range(right)]  # fmt: skip
            texts += ["\n</think>\n<answer>\nThe final answer is \\boxed{-1}.\n</answer>"] * (n - right)
            reasons = ["length" if self.cut_first and k == 0 else "stop" for k in range(n)]
            groups.append([Completion([1], t, r) for t, r in zip(texts, reasons, strict=True)])
        return groups


def test_select_rollouts_keeps_distinct_right_answers_of_moderate_prompts_only():
    correct = [[True, True, False, False], [True] * 4, [False] * 4, [True, True, True, False],
               [True, False, True, True]]  # fmt: skip
    texts = [["a", "a", "x", "y"], ["b"] * 4, ["c"] * 4, ["d", "e", "f", "z"], ["g", "w", "h", "i"]]
    cut = [[False] * 4, [False] * 4, [False] * 4, [True, False, False, False], [False] * 4]
    # prompt 0: alpha 0.5, "a" twice -> one; 1: alpha 1 and 2: alpha 0 -> none; 3: the cut "d" is skipped;
    # 4: alpha 0.75, the first two distinct right ones (per_prompt 2).
    kept = select_rollouts(correct, texts, cut, alpha_min=0.25, alpha_max=0.75, per_prompt=2)
    assert kept == [(0, 0), (3, 1), (3, 2), (4, 0), (4, 2)]
    everything = select_rollouts(correct, texts, cut, alpha_min=0.0, alpha_max=1.0, per_prompt=1)
    assert everything[:3] == [(0, 0), (1, 0), (3, 1)]
    assert select_rollouts(correct, texts, cut, alpha_min=0.6, alpha_max=0.7, per_prompt=1) == []


def test_rejection_sample_writes_the_kept_answers_as_a_valid_sft_set(tmp_path, model_dir, monkeypatch):
    prompts = tmp_path / "rl"
    generate_dataset(prompts, generation_plan(split="tiny_rl_train", size=4))
    rows = read_dataset(prompts)
    engine = OracleEngine([r["final_answer"] for r in rows], right_counts=[2, 4, 0, 1])
    tokenizer = load_tokenizer(str(model_dir))
    engine.bind(None, tokenizer, str(model_dir))
    monkeypatch.setattr("bridge_pl.rollout.factory.bound_engine", lambda *a, **k: (engine, tokenizer, None))
    settings = RejectionSettings(num_generations=4, alpha_min=0.2, alpha_max=0.8, per_prompt=2)
    written = rejection_sample(str(model_dir), str(prompts), tmp_path / "rs", size=4, settings=settings, seed=3)
    kept = read_dataset(tmp_path / "rs")
    # prompt 0 (alpha 0.5): both right answers; 1 (alpha 1) and 2 (alpha 0): none; 3 (alpha 0.25): its one.
    assert [(r["index"], r["copy"]) for r in kept] == [(rows[0]["index"], 0), (rows[0]["index"], 1),
                                                       (rows[3]["index"], 0)]  # fmt: skip
    assert all(r["response"].startswith("<think>\nStep ") and r["style"] == "rejection-sampled" for r in kept)
    assert kept[0]["query"] == rows[0]["query"] and kept[0]["final_answer"] == rows[0]["final_answer"]
    config = read_dataset_config(tmp_path / "rs")
    assert config["prompts_sampled"] == 4 and config["prompts_kept"] == 2 and written["rows"] == 3
    assert config["alpha_histogram"]["informative_mass"] == 0.5 and config["settings"]["per_prompt"] == 2
    assert verify_dataset(tmp_path / "rs").reward_mean == 1.0  # every kept answer is right by the strict match

    engine.right_counts = [0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"kept no rollout .* widen \[alpha_min, alpha_max\]"):
        rejection_sample(str(model_dir), str(prompts), tmp_path / "rs2", size=4, settings=settings)
    engine.right_counts, engine.cut_first = [1, 0, 0, 0], True  # the one right answer was cut: not kept
    with pytest.raises(ValueError, match="kept no rollout"):
        rejection_sample(str(model_dir), str(prompts), tmp_path / "rs3", size=4, settings=settings)
    assert not (tmp_path / "rs2").exists() and not (tmp_path / "rs3").exists()


def test_bad_rejection_settings_are_refused_before_sampling():
    bad = RejectionSettings(num_generations=0, alpha_min=0.9, alpha_max=0.1, per_prompt=0, temperature=0.0)
    assert len(bad.errors()) == 4
    with pytest.raises(ValueError, match="need 0 <= alpha_min <= alpha_max <= 1"):
        rejection_sample("no/such/model", "no/such/data", "out", size=1, settings=bad)
