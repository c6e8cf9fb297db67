"""The reserved KV cache: the same outputs as transformers' DynamicCache, in place, growing past its reservation."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from bridge_pl.models.model_io import cache_keyword, init_model_dir, load_model
from bridge_pl.rollout.kv_cache import ReservedLayer, reserved_cache


@pytest.fixture(scope="module", params=["llama-1m", "qwen2-3m"])
def model(request, tmp_path_factory):
    return load_model(init_model_dir(tmp_path_factory.mktemp("model"), preset=request.param, seed=5)).eval()


def sample(model, cache, seed=0, **kwargs):
    torch.manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (4, 9))
    mask = torch.ones_like(ids)
    mask[:2, :3] = 0  # two left-padded rows
    extra = {} if cache is None else {cache_keyword(): cache}
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, pad_token_id=0, **kwargs, **extra)
    return out


@pytest.mark.parametrize("capacity", [9 + 24, 5])  # the exact reservation, and one that has to grow (doubling)
def test_generate_gives_exactly_what_the_dynamic_cache_gives(model, capacity):
    for kwargs in ({"do_sample": False}, {"do_sample": True, "temperature": 1.0}):
        expected = sample(model, None, **kwargs)
        got = sample(model, reserved_cache(model, capacity), **kwargs)
        assert torch.equal(got, expected), kwargs


def test_keys_live_in_one_buffer_and_rows_can_be_selected_with_repeats(model):
    cache = reserved_cache(model, capacity=16)
    reference = DynamicCache()
    keys, values = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    for target in (cache, reference):
        target.update(keys, values, layer_idx=0)
    layer = cache.layers[0]
    assert isinstance(layer, ReservedLayer) and layer.keys.data_ptr() == layer._keys.data_ptr()
    index = torch.tensor([0, 0, 1, 1, 1])  # N copies of each prompt's prefill, as HFEngine uses it
    for target in (cache, reference):
        target.batch_select_indices(index)
        target.update(torch.randn(5, 1, 1, 4).fill_(7.0), torch.zeros(5, 1, 1, 4), layer_idx=0)
    assert torch.equal(cache.layers[0].keys, reference.layers[0].keys)
    assert cache.get_seq_length() == reference.get_seq_length() == 4
    assert layer._keys.shape[-2] == 16  # written in place: the reservation was kept through the selection
    cache.crop(-1)
    assert cache.get_seq_length() == 3 and torch.equal(cache.layers[0].keys, reference.layers[0].keys[..., :3, :])
