"""Weights handed to an inference engine: checkpoint names, tied layers, LoRA merged (and unmerged after)."""

from __future__ import annotations

import torch

from bridge_pl.models.model_io import apply_lora, init_model_dir, load_model, merge_lora
from bridge_pl.rollout import clean_name, hf_state_dict


def test_plain_model_gives_its_state_dict_with_tied_layers_under_both_names(tmp_path):
    model = load_model(init_model_dir(tmp_path, preset="llama-1m"))
    pushed = dict(hf_state_dict(model))
    assert pushed.keys() == model.state_dict().keys()
    assert "lm_head.weight" in pushed and "model.embed_tokens.weight" in pushed  # tied: both names
    assert torch.equal(pushed["lm_head.weight"], pushed["model.embed_tokens.weight"])


def test_lora_weights_are_merged_for_the_push_and_unmerged_after(tmp_path):
    directory = init_model_dir(tmp_path, preset="llama-1m")
    model = apply_lora(load_model(directory), r=4)
    with torch.no_grad():  # non-zero adapters, so merging changes the weights
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pushed = dict(hf_state_dict(model))  # consumed whole first: the values must survive the unmerge
    expected_model = apply_lora(load_model(directory), r=4)  # the same adapters, merged for good
    expected_model.load_state_dict(before)
    expected = merge_lora(expected_model).state_dict()
    assert pushed.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.allclose(pushed[key], value, atol=1e-6), key
    assert not any("lora" in key for key in pushed)
    after = model.state_dict()  # the trained model keeps its adapters, unmerged
    for key, value in before.items():
        assert torch.allclose(after[key], value, atol=1e-6), key


def test_clean_name_strips_wrappers():
    assert clean_name("module.model.norm.weight") == "model.norm.weight"
    assert (
        clean_name("model.layers.0._fsdp_wrapped_module.mlp.down_proj.weight") == "model.layers.0.mlp.down_proj.weight"
    )
    assert clean_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert clean_name("base_model.model.model.layers.0.mlp.up_proj.lora_B.default.weight") is None
