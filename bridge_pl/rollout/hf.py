"""`HFEngine`: rollouts from the transformers model being trained (KV cache, batched); runs everywhere.

The engine samples from the very module being trained, so its weights are always current and a push costs
nothing. Its own decoding loop (`bridge_pl.rollout.decode`) drops finished rows from the batch and gives every
completion its own random stream; transformers ``generate`` is used where that loop does not apply: under FSDP2
(every rank must call ``generate`` with the same number of batches, and ``synced_gpus`` keeps the ranks' forward
passes in step until all of them have finished), for stop strings of several tokens, for models whose cache is
not a plain layered one or whose forward takes no ``logits_to_keep``, and with ``decoding: generate``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.distributed as dist
from transformers import GenerationConfig

from bridge_pl.data.encoding import pad_left
from bridge_pl.models.model_io import cache_keyword
from bridge_pl.rollout.base import Completion, RolloutEngine, SamplingConfig, cut_at_stop
from bridge_pl.rollout.decode import decode, row_generators
from bridge_pl.rollout.kv_cache import reserved_cache
from bridge_pl.rollout.shared_prefix import SharedPrefix, supports_shared_prefix

__all__ = ["HFEngine"]

RESERVED_NEW_TOKENS = 512  # KV positions reserved for new tokens up front (doubling past it)


class HFEngine(RolloutEngine):
    """Rollouts from transformers ``generate`` on the policy module (no second copy of the weights).

    Args:
        batch_size: Sequences generated together (prompts x completions are cut into batches of this size).
        return_logprobs: Also return each sampled token's log-probability under the sampling distribution
            (costs a (batch, vocab) score tensor per step; GRPO recomputes log-probs itself, so off by default).
        decoding: ``compact`` (default): the engine's own loop, finished rows leave the batch and each completion
            draws from its own stream (seed, prompt, completion), so it does not depend on the batch it shared;
            it samples exactly the `SamplingConfig` distribution (a model's ``generation_config`` extras such as a
            repetition penalty are not applied: the GRPO loss assumes that distribution). ``generate``:
            transformers ``generate`` for every batch (one stream per call; the loop's fallback anyway where it
            does not apply, see the module docstring), with the model's ``generation_config`` extras off too.
        share_prompts: In the engine's own loop, keep each prompt's keys and values once and let all its
            completions read that copy (`bridge_pl.rollout.shared_prefix`; Llama, Qwen2/3 and Mistral without a
            sliding window): the prompt is read once per group and step instead of once per row. False: every row
            attends to its own copy of the prompt (the same numbers up to float rounding). None (default): shared
            on the CPU, where it is measured faster for long prompts (`scripts/bench_rollout.py`, compact against
            copied), copied on a GPU until the GPU check has measured it there.

    Example::

        model:
          init_args:
            engine: {class_path: bridge_pl.rollout.HFEngine, init_args: {batch_size: 64}}
    """

    def __init__(
        self,
        batch_size: int = 64,
        return_logprobs: bool = False,
        decoding: Literal["compact", "generate"] = "compact",
        share_prompts: bool | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"engine.init_args.batch_size={batch_size}: must be >= 1")
        if decoding not in ("compact", "generate"):
            raise ValueError(f"engine.init_args.decoding={decoding!r}: must be 'compact' or 'generate'")
        self.batch_size = batch_size
        self.return_logprobs = return_logprobs
        self.decoding = decoding
        self.share_prompts = share_prompts
        self.policy: Any = None

    def _start(self, policy: Any) -> None:
        self.policy = policy

    def _push_weights(self, policy: Any) -> None:
        self.policy = policy  # the engine samples from the policy module itself: nothing to copy

    def _generate(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Completion]]:
        rows = [ids for ids in prompt_ids for _ in range(n)]  # prompt i's n copies are consecutive
        keys = [(i, k) for i in range(len(prompt_ids)) for k in range(n)]  # (prompt, completion) of each row
        completions: list[Completion] = []
        model = self.policy
        was_training = model.training
        model.eval()  # no dropout while sampling
        try:
            with torch.random.fork_rng(devices=_rng_devices(model)):
                torch.manual_seed(seed)
                for start in range(0, len(rows), self.batch_size):
                    batch = slice(start, start + self.batch_size)
                    completions += self._generate_batch(rows[batch], keys[batch], sampling, seed)
        finally:
            model.train(was_training)
        return [completions[i * n : (i + 1) * n] for i in range(len(prompt_ids))]

    @torch.no_grad()
    def _generate_batch(
        self, rows: list[list[int]], keys: list[tuple[int, int]], sampling: SamplingConfig, seed: int
    ) -> list[Completion]:
        tokenizer, model = self.tokenizer, self.policy
        device = next(model.parameters()).device
        pad_id = _pad_id(tokenizer, model)
        input_ids = pad_left(rows, pad_id).to(device)  # (B, P)
        attention_mask = pad_left([[1] * len(r) for r in rows], 0).to(device)  # (B, P)
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        # Room for the prompt and the first RESERVED_NEW_TOKENS tokens; a longer completion doubles the buffers.
        new_tokens = min(sampling.max_new_tokens, RESERVED_NEW_TOKENS)
        stop_tokens, stop_strings = _split_stops(tokenizer, sampling.stop)
        ends = _eos_ids(tokenizer, model) | stop_tokens  # a one-token stop string stops like eos: cheaper than matching
        own_loop = self.decoding == "compact" and not synced and not stop_strings and _keeps_logits(model)
        share_prompts = device.type == "cpu" if self.share_prompts is None else self.share_prompts
        share = own_loop and share_prompts and supports_shared_prefix(model)
        cache, prefix = self._prefill(rows, pad_id, device, input_ids.shape[1] + new_tokens, synced, share)
        if own_loop and cache is not None:
            generators = None if sampling.greedy else row_generators(seed, keys, device)
            ids, logprobs = decode(model, input_ids, attention_mask, cache, sampling, ends, generators,
                                   self.return_logprobs, prefix=prefix)  # fmt: skip
            return [self._completion(row, sampling, ends, None if logprobs is None else logprobs[i])
                    for i, row in enumerate(ids)]  # fmt: skip
        kwargs: dict[str, Any] = {"do_sample": not sampling.greedy, "max_new_tokens": sampling.max_new_tokens}
        if not sampling.greedy:
            kwargs |= {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k or None}
        else:
            kwargs |= {"temperature": None, "top_p": None, "top_k": None}
        if stop_strings:
            kwargs |= {"stop_strings": stop_strings, "tokenizer": tokenizer}
        with _plain_generation_config(model):
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pad_token_id=pad_id,
                eos_token_id=sorted(ends),
                return_dict_in_generate=True,
                output_scores=self.return_logprobs,
                synced_gpus=synced,
                **({} if cache is None else {cache_keyword(): cache}),
                **kwargs,
            )
        generated = out.sequences[:, input_ids.shape[1] :]  # (B, C)
        token_logprobs = _sampled_logprobs(out.scores, generated) if self.return_logprobs else None  # (B, C)
        logprobs = None if token_logprobs is None else token_logprobs.tolist()
        return [self._completion(ids, sampling, ends, None if logprobs is None else logprobs[i])
                for i, ids in enumerate(generated.tolist())]  # fmt: skip

    def _completion(
        self, ids: list[int], sampling: SamplingConfig, ends: set[int], logprobs: list[float] | None
    ) -> Completion:
        """One completion from a row's generated ids (cut after its stop) and its per-token log-probs, if any."""
        kept, text, finish = cut_at_stop(ids, self.tokenizer, sampling.stop, ends)
        return Completion(kept, text, finish, None if logprobs is None else logprobs[: len(kept)])

    def _prefill(
        self, rows: list[list[int]], pad_id: int, device: torch.device, capacity: int, synced: bool, share: bool
    ) -> tuple[Any, SharedPrefix | None]:
        """The KV cache decoding starts from (`capacity` positions reserved), and the shared prompts if `share`.

        A GRPO batch holds N copies of each prompt: their prefill (every prompt token but the last) is computed
        once, then either kept once per prompt as a `SharedPrefix` (`share`, with a cache that receives each row's
        own positions from the last prompt token on), or indexed per row into the cache. Decoding goes on from the
        last prompt token. Without copies the cache is empty and decoding fills it. The cache is None where
        transformers has no layered cache. Under FSDP2 (`synced`) every rank takes the same path, since the
        prefill forward gathers parameters.
        """
        cache = reserved_cache(self.policy, capacity)
        share = share and cache is not None
        distinct: dict[tuple[int, ...], int] = {}
        index = [distinct.setdefault(tuple(r), len(distinct)) for r in rows]
        prefill = min(len(r) for r in rows) >= 2 and (synced or len(distinct) < len(rows))
        if synced:
            flag = torch.tensor(float(prefill), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            prefill = bool(flag)
        if not prefill:
            return cache, None
        unique = [list(r) for r in distinct]
        ids = pad_left(unique, pad_id).to(device)[:, :-1]  # (U, P - 1): left padding keeps every last token last
        mask = pad_left([[1] * len(r) for r in unique], 0).to(device)[:, :-1]
        positions = (mask.cumsum(1) - 1).masked_fill(mask == 0, 1)  # as generate numbers left-padded prompts
        kwargs = {} if cache is None or share else {cache_keyword(): cache}  # shared: the model's own, exact size
        out = self.policy(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs)
        prompts = out["cache"] if "cache" in out else out["past_key_values"]  # (U, ...) per layer
        groups = torch.tensor(index, device=device)  # (B,) the prompt of each row
        if not share:
            prompts.batch_select_indices(groups)
            return prompts, None
        keys, values = [layer.keys for layer in prompts.layers], [layer.values for layer in prompts.layers]
        prefix = SharedPrefix(keys, values, mask.bool(), groups)
        return reserved_cache(self.policy, capacity - prefix.length), prefix


@contextlib.contextmanager
def _plain_generation_config(model: Any) -> Iterator[None]:
    """``generate`` with a default `GenerationConfig` in place of the model's, restored afterwards.

    ``generate`` fills every setting a call leaves unset from the model's ``generation_config``, so a checkpoint's
    extras (Qwen2.5-Instruct ships a 1.05 repetition penalty, others a no-repeat n-gram size or suppressed tokens)
    would change the sampling distribution away from the `SamplingConfig` one the GRPO loss assumes, and away from
    what the engine's own loop samples. Every setting that matters is passed per call.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the wrapped model
    configured = getattr(base, "generation_config", None)
    if configured is None:
        yield
        return
    base.generation_config = GenerationConfig()
    try:
        yield
    finally:
        base.generation_config = configured


def _keeps_logits(model: Any) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' own models do; remote code may not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the wrapped model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _sampled_logprobs(scores: tuple[torch.Tensor, ...], generated: torch.Tensor) -> torch.Tensor:
    """Log-probability of each generated token under the processed scores of its step: (B, C)."""
    logprobs = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in scores], dim=1)  # (B, C, V)
    return logprobs.gather(-1, generated[:, : logprobs.shape[1], None]).squeeze(-1)


def _split_stops(tokenizer: Any, stop: tuple[str, ...]) -> tuple[set[int], list[str]]:
    """(ids of stop strings that are one token of their own, the other stop strings)."""
    tokens, strings = set(), []
    for text in stop:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and tokenizer.decode(ids) == text:
            tokens.add(ids[0])
        else:
            strings.append(text)
    return tokens, strings


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """Every token id that ends a completion: the generation config's eos ids and the tokenizer's eos."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _pad_id(tokenizer: Any, model: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return min(_eos_ids(tokenizer, model))


def _rng_devices(model: Any) -> list[Any]:
    device = next(model.parameters()).device
    return [device] if device.type == "cuda" else []
