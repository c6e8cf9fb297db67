"""Tiny from-scratch models, local loading and saving, LoRA."""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig

from bridge_pl.augment.bridge import render_bridge_answer
from bridge_pl.data.prompts import format_conversation
from bridge_pl.models.model_io import (
    TINY_PRESETS,
    apply_lora,
    build_model,
    count_parameters,
    init_model_dir,
    load_model,
    load_tokenizer,
    merge_lora,
    model_config,
    save_pretrained,
)
from bridge_pl.models.tokenizer import build_tokenizer
from bridge_pl.task.generator import GeneratorConfig, generate_problem, stream_rng
from bridge_pl.task.question import render_question

# peft 0.21 still reads the deprecated `is_gradient_checkpointing` of transformers 5.23.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

NOMINAL = {"1m": 1e6, "3m": 3e6, "10m": 10e6, "30m": 30e6, "100m": 100e6}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer) -> dict[str, torch.Tensor]:
    problem = generate_problem(GeneratorConfig(), 11, 0)
    answer, _ = render_bridge_answer(problem, stream_rng("test-model-io"))
    text = format_conversation(tokenizer, render_question(problem), answer)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    return {"input_ids": ids, "labels": ids}


def checkpointing(model) -> bool:
    """Whether activation checkpointing is on (`is_gradient_checkpointing`, without its deprecation warning)."""
    return any(getattr(module, "gradient_checkpointing", False) for module in model.modules())


def logits_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"]).logits


@pytest.mark.parametrize("name", list(TINY_PRESETS))
def test_preset_parameter_count_matches_its_name(name, tokenizer):
    config = model_config(name, tokenizer)
    with torch.device("meta"):  # shapes only: counting needs no memory and no initialisation
        model = AutoModelForCausalLM.from_config(config)
    count = count_parameters(model)
    print(f"{name}: {count / 1e6:.2f}M parameters")
    nominal = NOMINAL[name.split("-")[1]]
    assert 0.6 * nominal <= count <= 1.4 * nominal
    assert model.config.max_position_embeddings == 2048
    assert model.config.vocab_size == len(tokenizer)


@pytest.mark.parametrize("name", ["llama-1m", "qwen2-3m"])
def test_fresh_model_loss_is_near_uniform(name, tokenizer, batch):
    model = build_model(name, tokenizer)
    assert model.training
    assert (model.config.eos_token_id, model.config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    loss = model(**batch).loss.item()
    assert math.isfinite(loss)
    assert abs(loss - math.log(len(tokenizer))) < 0.5


def test_build_is_deterministic_and_leaves_global_rng_alone(tokenizer):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = build_model("llama-1m", tokenizer, seed=5).state_dict()
    assert torch.equal(torch.rand(3), expected_draw)
    second = build_model("llama-1m", tokenizer, seed=5).state_dict()
    other = build_model("llama-1m", tokenizer, seed=6).state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])


def test_build_from_config_takes_the_tokenizers_vocabulary(tokenizer):
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)
    config.vocab_size = 7
    model = build_model(config, tokenizer, dtype=torch.bfloat16)
    assert model.config.vocab_size == len(tokenizer)
    assert config.vocab_size == 7  # the caller's config is not modified
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16


def test_unknown_preset_names_the_choices(tokenizer):
    with pytest.raises(ValueError, match="llama-3m"):
        build_model("gpt-5", tokenizer)


def test_save_and_load_round_trip(tokenizer, batch, tmp_path):
    model = build_model("llama-1m", tokenizer, seed=1)
    save_pretrained(model, tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = load_model(tmp_path)
    assert loaded.training
    assert not checkpointing(loaded)
    model.eval(), loaded.eval()
    assert torch.equal(logits_of(loaded, batch), logits_of(model, batch))
    reloaded_tokenizer = load_tokenizer(tmp_path)
    assert reloaded_tokenizer.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert reloaded_tokenizer.chat_template == tokenizer.chat_template


def test_load_options(tokenizer, tmp_path):
    save_pretrained(build_model("llama-1m", tokenizer), tokenizer, tmp_path)
    model = load_model(tmp_path, dtype="bfloat16", attn_implementation="eager", gradient_checkpointing=True)
    assert model.training
    assert checkpointing(model)
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    assert load_model(tmp_path, dtype="auto").model.embed_tokens.weight.dtype == torch.float32


def test_missing_model_directory_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*bridge model init --out DIR") as missing:
        load_model(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(missing.value)
    with pytest.raises(FileNotFoundError, match="holds no config.json.*bridge model init"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        load_tokenizer(tmp_path)


def perturbed_lora(tokenizer):
    """A LoRA model whose adapters are non-zero (fresh ones are: lora_B starts at zero)."""
    model = apply_lora(build_model("llama-1m", tokenizer, seed=2), r=4, alpha=8)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def test_lora_trains_only_the_adapters(tokenizer):
    model = apply_lora(build_model("llama-1m", tokenizer))
    assert isinstance(model, PeftModel)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    targeted = {name.split(".lora_")[0].rsplit(".", 1)[1] for name in trainable}
    assert targeted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert count_parameters(model, trainable_only=True) < 0.1 * count_parameters(model)


def test_merged_lora_gives_the_same_logits(tokenizer, batch):
    model = perturbed_lora(tokenizer)
    expected = logits_of(model, batch)
    merged = merge_lora(model)
    assert not isinstance(merged, PeftModel)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits_of(merged, batch), expected, atol=1e-5, rtol=1e-5)
    assert merge_lora(merged) is merged


def test_saving_a_lora_model_writes_a_plain_merged_model(tokenizer, batch, tmp_path):
    model = perturbed_lora(tokenizer)
    expected = logits_of(model, batch)
    save_pretrained(model, tokenizer, tmp_path)
    assert isinstance(model, PeftModel)  # the caller's model keeps its adapters
    assert not (tmp_path / "adapter_config.json").exists()
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        assert not any("lora" in key for key in weights.keys())
    loaded = load_model(tmp_path).eval()
    torch.testing.assert_close(logits_of(loaded, batch), expected, atol=1e-5, rtol=1e-5)


def test_init_model_dir_writes_the_embedded_default(tokenizer, tmp_path):
    out = init_model_dir(tmp_path / "model", preset="llama-1m", seed=3)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == len(tokenizer)
    model = load_model(out)
    assert count_parameters(model) == count_parameters(build_model("llama-1m", tokenizer))
    assert load_tokenizer(out).backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
