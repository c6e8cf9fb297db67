"""Decoding over a prompt held once per group: the attention over [prompt | own positions], the engine's tokens."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

from bridge_pl.models.model_io import cache_keyword, load_model, load_tokenizer
from bridge_pl.rollout import HFEngine, SamplingConfig
from bridge_pl.rollout import hf as hf_module
from bridge_pl.rollout.shared_prefix import (
    SharedPrefix,
    group_slots,
    prefix_attention,
    shared_prefix_attention,
    sharing_prefix,
    supports_shared_prefix,
)

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")])


def test_hand_worked_attention_over_a_padded_prompt_and_own_positions():
    # One head of width 1, scale 1. Scores: prompt 0 and ln 3 (the padded 50 is not attended), own position 0:
    # weights 1, 3, 1 over values 0, 4, 8 -> (0 + 12 + 8) / 5 = 4.
    query = torch.ones(1, 1, 1, 1)
    prefix_keys = torch.tensor([50.0, 0.0, math.log(3.0)]).reshape(1, 1, 3, 1)
    prefix_values = torch.tensor([100.0, 0.0, 4.0]).reshape(1, 1, 3, 1)
    mask = torch.tensor([[False, True, True]])
    keys, values = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 8.0)
    groups = torch.tensor([0])
    slots, width = group_slots(groups, 1)
    out = shared_prefix_attention(query, keys, values, prefix_keys, prefix_values, mask, groups, slots, width, 1.0)
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(4.0, abs=1e-6)


def test_group_slots_number_each_prompts_rows_in_order():
    slots, width = group_slots(torch.tensor([0, 2, 1, 0, 2, 2, 1]), 3)
    assert slots.tolist() == [0, 0, 0, 1, 1, 2, 1] and width == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_equals_attention_over_each_rows_whole_sequence(dtype):
    generator = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    rows, prompts, heads, kv_heads, dim, prompt_length, own_length = 7, 3, 4, 2, 8, 6, 5
    groups = torch.tensor([0, 2, 1, 0, 2, 2, 1])  # not contiguous, unequal group sizes
    query, keys, values = (
        randn(rows, heads, 1, dim),
        randn(rows, kv_heads, own_length, dim),
        randn(rows, kv_heads, own_length, dim),
    )
    prefix_keys, prefix_values = (
        randn(prompts, kv_heads, prompt_length, dim),
        randn(prompts, kv_heads, prompt_length, dim),
    )
    mask = torch.ones(prompts, prompt_length, dtype=torch.bool)
    mask[1, :2] = False  # left padding
    mask[2, :5] = False
    # Reference: every row's own copy of its prompt, key/value heads repeated, masked softmax attention.
    whole_keys = torch.cat([prefix_keys[groups], keys], dim=2).repeat_interleave(heads // kv_heads, dim=1)
    whole_values = torch.cat([prefix_values[groups], values], dim=2).repeat_interleave(heads // kv_heads, dim=1)
    whole_mask = torch.cat([mask[groups], torch.ones(rows, own_length, dtype=torch.bool)], dim=1)[:, None, None, :]
    expected = torch.nn.functional.scaled_dot_product_attention(query, whole_keys, whole_values, attn_mask=whole_mask)
    slots, width = group_slots(groups, prompts)
    cast = lambda t: t.to(dtype)  # noqa: E731
    got = shared_prefix_attention(cast(query), cast(keys), cast(values), cast(prefix_keys), cast(prefix_values),
                                  mask, groups, slots, width, dim**-0.5)  # fmt: skip
    assert got.dtype == dtype and got.shape == (rows, heads, 1, dim)
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}[dtype]
    torch.testing.assert_close(got.float(), expected, atol=tolerance, rtol=tolerance)


def test_selecting_rows_drops_the_prompts_no_row_reads():
    keys = [torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 1, 2, 1)]
    prefix = SharedPrefix(
        keys, [k + 10 for k in keys], torch.ones(3, 2, dtype=torch.bool), torch.tensor([0, 0, 1, 2, 2])
    )
    assert prefix.slots.tolist() == [0, 1, 0, 0, 1] and prefix.width == 2
    prefix.select(torch.tensor([0, 1, 3]))  # prompt 1's only row finished
    assert prefix.groups.tolist() == [0, 0, 1] and prefix.slots.tolist() == [0, 1, 0] and prefix.width == 2
    assert prefix.keys[0][:, 0, 0, 0].tolist() == [0.0, 2.0] and prefix.values[0][:, 0, 0, 0].tolist() == [10.0, 12.0]
    assert prefix.mask.shape == (2, 2)


def test_the_implementation_refuses_calls_outside_the_decoding_loop_and_what_it_cannot_do():
    module, zeros = SimpleNamespace(layer_idx=0), torch.zeros(1, 1, 1, 2)
    with pytest.raises(RuntimeError, match="shared_prefix="):
        prefix_attention(module, zeros, zeros, zeros, None)
    prefix = SharedPrefix([zeros], [zeros], torch.ones(1, 1, dtype=torch.bool), torch.tensor([0]))
    with pytest.raises(RuntimeError, match="sliding_window"):
        prefix_attention(module, zeros, zeros, zeros, None, shared_prefix=prefix, sliding_window=4)


def tiny_model(family: str, sliding_window: int | None = None) -> torch.nn.Module:
    """A random 2-layer model of `family` with grouped-query attention."""
    configs = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config, "mistral": MistralConfig}
    sizes = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, sliding_window=sliding_window)  # fmt: skip
    config = configs[family](**sizes)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral"])
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_decoding_steps_give_the_logits_of_a_copy_per_row(family, device):
    model = tiny_model(family).to(device)
    assert supports_shared_prefix(model)
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]], device=device)  # (u, P): prompt 0 left-padded
    mask = (torch.arange(6, device=device) >= torch.tensor([[2], [0]], device=device)).long()
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    groups = torch.tensor([1, 0, 1, 1, 0], device=device)  # five rows, the prompts' rows not contiguous
    logits = {}
    with torch.no_grad():
        for share in (True, False):
            out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1])
            prompts = out["cache"] if "cache" in out else out.past_key_values  # (u, ...) the prompts but the last token
            step, position = ids[groups, -1:], positions[groups, -1:]  # (b, 1)
            if share:
                layers = prompts.layers
                prefix = SharedPrefix([x.keys for x in layers], [x.values for x in layers], mask[:, :-1].bool(), groups)
                cache, extra = DynamicCache(), {"shared_prefix": prefix}
            else:
                prompts.batch_select_indices(groups)
                cache, extra = prompts, {}
            rows_mask, steps = mask[groups], []
            for _ in range(3):  # the last prompt token, then two tokens of the rows' own
                rows_mask = torch.cat([rows_mask, torch.ones_like(step)], dim=1)
                mask_arg = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device) if share else rows_mask
                with sharing_prefix(model) if share else contextlib.nullcontext():
                    out = model(input_ids=step, attention_mask=mask_arg, position_ids=position, use_cache=True,
                                **{cache_keyword(): cache}, **extra)  # fmt: skip
                steps.append(out.logits[:, -1].float())
                step, position = out.logits[:, -1].argmax(-1, keepdim=True), position + 1
            logits[share] = torch.stack(steps)  # (3, b, V)
    assert model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(logits[True], logits[False], atol=1e-5, rtol=1e-5)


def test_the_models_attention_is_put_back_after_an_error_and_nested_use():
    model = tiny_model("llama")
    with pytest.raises(KeyError):
        with sharing_prefix(model):
            with sharing_prefix(model):
                assert model.config._attn_implementation == "bridge_shared_prefix"
            assert model.config._attn_implementation == "bridge_shared_prefix"
            raise KeyError("inside")
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="cannot decode with shared prompts"):
        with sharing_prefix(SimpleNamespace(config=MistralConfig(sliding_window=16))):
            pass


def test_only_transformers_own_plain_full_attention_models_share():
    assert supports_shared_prefix(tiny_model("llama"))
    assert not supports_shared_prefix(tiny_model("mistral", sliding_window=16))

    class RemoteLlama(LlamaForCausalLM):  # remote code that calls itself "llama"
        pass

    assert not supports_shared_prefix(RemoteLlama(tiny_model("llama").config))
    assert not supports_shared_prefix(SimpleNamespace(config=SimpleNamespace(model_type="gemma2")))


@pytest.fixture(scope="module", params=["llama-1m", "qwen2-3m"])
def model_dir(request, loud_model_dir):
    """A random tiny model with large weights: its sampled answers differ from row to row."""
    return loud_model_dir(request.param)


@pytest.mark.parametrize("lora", [False, True])
def test_the_engine_samples_the_same_tokens_sharing_the_prompts(model_dir, lora, monkeypatch):
    tokenizer = load_tokenizer(model_dir)
    texts = ["How many Pens does each Bag have?", "Hello", "The number of each Bag's Pen equals 3 more than"]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=20, stop=())
    prefixes = []
    decode = hf_module.decode
    monkeypatch.setattr(hf_module, "decode", lambda *a, **k: prefixes.append(k["prefix"]) or decode(*a, **k))
    results = {}
    for share in (True, False):
        model = load_model(model_dir)
        if lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
        model.generation_config.eos_token_id = [tokenizer.eos_token_id, 7, 11, 13]  # rows finish at different steps
        engine = HFEngine(batch_size=8, share_prompts=share, return_logprobs=True)  # the CPU default: shared
        engine.bind(model, tokenizer, str(model_dir))
        results[share] = engine.generate(prompts, 4, sampling, seed=2)
        assert model.config._attn_implementation == "sdpa"  # put back after decoding
    assert all(p is not None for p in prefixes[:2]) and prefixes[2:] == [None, None]  # 2 batches a run
    shared, copied = results[True], results[False]
    assert [[c.token_ids for c in g] for g in shared] == [[c.token_ids for c in g] for g in copied]
    assert len({len(c.token_ids) for g in shared for c in g}) > 1  # rows left the batch at different steps
    for group, expected in zip(shared, copied, strict=True):
        for completion, reference in zip(group, expected, strict=True):  # float rounding, amplified by big weights
            torch.testing.assert_close(
                torch.tensor(completion.logprobs), torch.tensor(reference.logprobs), atol=1e-4, rtol=1e-4
            )
