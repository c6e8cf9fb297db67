"""probe_model and screen_targets on a from-scratch model: screened target positions reach the influence."""

from __future__ import annotations

import pytest

from bridge_pl.analysis.measure import probe_model, screen_targets
from bridge_pl.data.encoding import load_tokenizer
from bridge_pl.data.pipeline import generate_dataset, generation_plan
from bridge_pl.data.prompt_sets import load_prompt_set


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_probe_model_measures_against_the_target_positions_it_is_given(tmp_path, model_dir):
    prompts = tmp_path / "prompts"
    generate_dataset(prompts, generation_plan(split="tiny_rl_val", size=4))
    alphas = screen_targets(str(model_dir), str(prompts), pool=4, num_generations=2, max_new_tokens=4, seed=2)
    assert len(alphas) == 4 and set(alphas) <= {0.0, 0.5, 1.0}
    common = {"size": 2, "num_generations": 2, "max_new_tokens": 4, "parameters": "lm_head", "seed": 0}
    assert probe_model(str(model_dir), str(prompts), str(prompts), **common)["influence"]["targets"] == [0, 1]
    picked = probe_model(str(model_dir), str(prompts), str(prompts), target_index=[3, 1], **common)
    assert picked["influence"]["targets"] == [3, 1]  # in the given order, with their file positions


def test_a_prompt_set_subset_keeps_each_prompt_with_its_answer_and_position(tmp_path, model_dir):
    prompts = tmp_path / "prompts"
    generate_dataset(prompts, generation_plan(split="tiny_rl_val", size=5))
    whole = load_prompt_set(str(prompts), load_tokenizer(model_dir))
    part = whole.subset([4, 0, 2])
    assert part.index == [4, 0, 2] and part.task is whole.task and part.path == whole.path
    assert part.prompt_ids == [whole.prompt_ids[i] for i in (4, 0, 2)]
    assert (part.ground_truth, part.num_ops) == ([whole.ground_truth[i] for i in (4, 0, 2)],
                                                 [whole.num_ops[i] for i in (4, 0, 2)])  # fmt: skip
