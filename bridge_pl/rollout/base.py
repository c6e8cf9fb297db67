"""The rollout-engine interface: sample completions of token-id prompts, and follow the policy's weights.

Every engine (`HFEngine`: transformers ``generate``; `VLLMEngine`: an in-process vLLM) answers the same call::

    engine.bind(policy, tokenizer, model_path)          # once, before the first generate
    groups = engine.generate(prompt_ids, n=8, sampling=SamplingConfig(temperature=1.0, max_new_tokens=512))
    groups[i][k].token_ids, .text, .logprobs, .finish_reason   # completion k of prompt i
    engine.mark_stale()                                  # after every optimizer step
    engine.sync_weights(policy)                          # push now (generate also does it when stale)

Completions stop at a stop string (kept in ``text`` and ``token_ids``), at the tokenizer's eos (kept in
``token_ids``), or at ``max_new_tokens`` (``finish_reason == "length"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Completion", "RolloutEngine", "SamplingConfig", "cut_at_stop"]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are drawn (the paper's rollouts: temperature 1, top-p 1, no top-k, stop at </answer>)."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass (1: off)."""
    top_k: int = 0
    """Sample among the k most likely tokens (0: off)."""
    max_new_tokens: int = 1024
    """Longest completion in tokens (the paper: 2560)."""
    stop: tuple[str, ...] = ("</answer>",)
    """Strings that end a completion (kept at its end); the tokenizer's eos always ends one too."""

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0)."""
        return self.temperature == 0

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key and the fix."""
        issues = []
        if self.temperature < 0:
            issues.append(f"{key}.temperature={self.temperature}: must be >= 0 (0 is greedy)")
        if not 0 < self.top_p <= 1:
            issues.append(f"{key}.top_p={self.top_p}: must be in (0, 1]")
        if self.top_k < 0:
            issues.append(f"{key}.top_k={self.top_k}: must be >= 0 (0 turns it off)")
        if self.max_new_tokens < 1:
            issues.append(f"{key}.max_new_tokens={self.max_new_tokens}: must be >= 1")
        return issues


@dataclass
class Completion:
    """One sampled completion of one prompt."""

    token_ids: list[int]
    """Generated tokens, the final stop-string or eos token included."""
    text: str
    """Decoded completion (special tokens skipped), ending with the stop string when one ended it."""
    finish_reason: FinishReason
    """"stop" (a stop string or eos ended it) or "length" (cut at max_new_tokens)."""
    logprobs: list[float] | None = None
    """Log-probability of each generated token under the engine's sampling distribution, if the engine gives it."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Engine-specific details (e.g. vLLM's stop_reason)."""


class RolloutEngine(ABC):
    """Samples completions for the policy being trained; subclasses keep their weights equal to the policy's.

    Subclasses implement `_start`, `_generate` and `_push_weights`; this base class tracks staleness, so a
    push happens at most once per optimizer step and always before the next generation.
    """

    trust_remote_code = False  # whether the engine may run modelling code of the model directory (the module's)

    def __init__(self) -> None:
        self._stale = False
        self._bound = False

    def bind(self, policy: Any, tokenizer: Any, model_path: str) -> None:
        """Attach the policy (a transformers model, maybe sharded or with LoRA), its tokenizer and model directory."""
        self.tokenizer = tokenizer
        self.model_path = model_path
        self._policy = policy  # pushed from when the engine is stale and generate gets no policy
        self._start(policy)
        self._bound = True
        self._stale = False

    @property
    def bound(self) -> bool:
        """Whether `bind` has been called."""
        return self._bound

    def mark_stale(self) -> None:
        """Record that the policy's weights changed (call after each optimizer step)."""
        self._stale = True

    def sync_weights(self, policy: Any) -> None:
        """Make the engine's weights equal to the policy's now (collective under FSDP: every rank calls it)."""
        self._require_bound()
        self._push_weights(policy)
        self._stale = False

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        n: int,
        sampling: SamplingConfig,
        *,
        policy: Any = None,
        seed: int = 0,
    ) -> list[list[Completion]]:
        """`n` completions of each prompt, pushing the policy's weights first if they changed.

        Args:
            prompt_ids: Token ids of each prompt (no padding).
            n: Completions per prompt.
            sampling: Temperature, top-p/k, length and stop strings.
            policy: The policy to push weights from when they are stale (default: the one given to `bind`).
            seed: Seed of this call's sampling; prompt i draws from its own stream (seed, i).

        Returns:
            One list of `n` completions per prompt, in prompt order.
        """
        self._require_bound()
        if self._stale:
            self.sync_weights(policy if policy is not None else self._policy)
        if n < 1:
            raise ValueError(f"n={n}: need at least one completion per prompt")
        if not prompt_ids:
            return []
        return self._generate([list(p) for p in prompt_ids], n, sampling, seed)

    def close(self) -> None:  # noqa: B027 (optional hook: engines without resources keep it)
        """Release the engine's resources (a no-op unless the engine holds any)."""

    # ------------------------------------------------------------------------------------------- subclass API
    @abstractmethod
    def _start(self, policy: Any) -> None:
        """Build the engine for `policy` (called by `bind`)."""

    @abstractmethod
    def _generate(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Completion]]:
        """The completions (weights are current when this is called)."""

    @abstractmethod
    def _push_weights(self, policy: Any) -> None:
        """Copy the policy's current weights into the engine."""

    def _require_bound(self) -> None:
        if not self._bound:
            raise RuntimeError(f"{type(self).__name__}.bind(policy, tokenizer, model_path) must be called first")


def cut_at_stop(
    token_ids: Sequence[int], tokenizer: Any, stop: Sequence[str], eos_ids: set[int]
) -> tuple[list[int], str, FinishReason]:
    """Cut generated tokens after the first stop string or eos token: (token ids, text, finish reason).

    The text is decoded without special tokens. The stop string's own tokens are kept, so a completion that
    stopped at "</answer>" ends with it in both ids and text; everything after it (padding, or tokens a
    batch kept generating) is dropped.

    Args:
        token_ids: Generated tokens of one completion (possibly followed by padding).
        tokenizer: Decodes the ids.
        stop: Stop strings.
        eos_ids: Token ids that end a completion (kept).
    """
    ids = list(token_ids)
    end = next((i + 1 for i, t in enumerate(ids) if t in eos_ids), None)
    finish: FinishReason = "stop" if end is not None else "length"
    ids = ids[:end] if end is not None else ids
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not any(s in text for s in stop):
        return ids, text, finish
    # The shortest prefix of tokens whose text holds a stop string: binary search over decodes (O(log T)).
    low, high = 1, len(ids)
    while low < high:
        mid = (low + high) // 2
        if any(s in tokenizer.decode(ids[:mid], skip_special_tokens=True) for s in stop):
            high = mid
        else:
            low = mid + 1
    ids = ids[:low]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return ids, text[: min(text.find(s) + len(s) for s in stop if s in text)], "stop"
