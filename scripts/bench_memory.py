"""Peak memory of one GRPO micro-batch: chunked log-probs (``chunk_tokens``) against full (B, T, V) logits.

One micro-batch of a GRPO update at Qwen's vocabulary (151,936 tokens): B completions (default 1) of one prompt (the
shared-prompt KV-cache path of `completion_logprobs`), T completion tokens each, log-probs and entropy with gradient,
a policy-gradient loss -(A * logp) token mean with advantages +-1 minus the entropy bonus (``--entropy-coef``, the
paper's Qwen configs' 0.001 by default; 0 leaves the entropy a diagnostic), and its backward. The model is a
from-scratch tiny Llama (hidden 64, 2 layers) so that the output layer's logits dominate memory, as they do at
long completions. Both variants run in the same invocation on the same weights and batch; the figure is the
peak memory above what the model and batch already hold, and the ratio ours / full. The losses and every
parameter's gradient are compared.

How the peak is measured: on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation before the step
(both variants in this process). On the CPU, each variant runs in a fresh subprocess and reports its peak
resident set size (``resource.getrusage(...).ru_maxrss``) minus its RSS just before the step: glibc serves
these large tensors with mmap and returns them on free, so RSS follows the tensors (tracemalloc does not see
torch's allocations).

    python scripts/bench_memory.py                          # B 1, T 2560, chunks of 512 tokens (~2 min, 2 CPUs)
    python scripts/bench_memory.py --micro-batch 2          # ~15 GiB of RAM for the full-logits side, ~3.5 min
    python scripts/bench_memory.py --completion-tokens 640  # quicker
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bridge_pl.rl.logprobs import CompletionBatch, completion_logprobs

GiB = 2**30


def setup(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, CompletionBatch]:
    config = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, pad_token_id=0,
        max_position_embeddings=args.prompt_tokens + args.completion_tokens,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device).train()
    ids = torch.randint(1, args.vocab, (1 + args.micro_batch, max(args.prompt_tokens, args.completion_tokens)))
    prompts = [ids[0, : args.prompt_tokens].tolist()] * args.micro_batch
    completions = [row[: args.completion_tokens].tolist() for row in ids[1:]]
    return model, CompletionBatch.build(prompts, completions, pad_id=0, device=device)


def step(model: torch.nn.Module, batch: CompletionBatch, chunk_tokens: int | None, args: argparse.Namespace):
    """One micro-batch: log-probs + entropy, -(A * logp) - coef * entropy token means, backward. Returns the loss."""
    logprobs, entropy, width = completion_logprobs(
        model, batch, temperature=args.temperature, with_entropy=True, entropy_grad=args.entropy_coef > 0,
        chunk_tokens=chunk_tokens,
    )  # fmt: skip
    mask = batch.completion_mask[:, :width]  # (B, T)
    advantages = torch.tensor([1.0, -1.0], device=mask.device).repeat(len(batch))[: len(batch)]  # (B,)
    loss = -(advantages[:, None] * logprobs * mask).sum() / mask.sum()
    if args.entropy_coef > 0:
        loss = loss - args.entropy_coef * (entropy * mask).sum() / mask.sum()
    loss.backward()
    assert entropy is not None and torch.isfinite(entropy).all()
    return loss.detach()


def measure_cuda(args: argparse.Namespace) -> dict[str, tuple[float, torch.Tensor, dict]]:
    model, batch = setup(args, "cuda")
    results = {}
    for name, chunk in (("full", None), ("ours", args.chunk_tokens)):
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss = step(model, batch, chunk, args)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        results[name] = (peak, loss.cpu(), {n: p.grad.cpu() for n, p in model.named_parameters()})
    return results


def child(args: argparse.Namespace) -> None:
    """One variant in this fresh process: write (peak RSS above the pre-step RSS, loss, gradients) to args.out."""
    model, batch = setup(args, "cpu")
    base = psutil.Process().memory_info().rss
    loss = step(model, batch, None if args.variant == "full" else args.chunk_tokens, args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # ru_maxrss is in KiB on Linux
    torch.save((peak, loss, {n: p.grad for n, p in model.named_parameters()}), args.out)


def measure_cpu(args: argparse.Namespace, argv: list[str]) -> dict[str, tuple[float, torch.Tensor, dict]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("full", "ours"):
            out = Path(tmp) / f"{name}.pt"
            subprocess.run([sys.executable, __file__, *argv, "--variant", name, "--out", str(out)], check=True)
            results[name] = torch.load(out)
    return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completion-tokens", type=int, default=2560)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--entropy-coef", type=float, default=0.001, help="entropy bonus (0: no entropy gradient)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--variant", choices=["full", "ours"], help=argparse.SUPPRESS)  # the CPU child process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant is not None:
        return child(args)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    print(
        f"B {args.micro_batch} x T {args.completion_tokens} completion tokens, V {args.vocab}, hidden {args.hidden}, "
        f"chunks of {args.chunk_tokens} tokens, temperature {args.temperature}, entropy coef {args.entropy_coef}; peak "
        + ("torch.cuda.max_memory_allocated" if cuda else "RSS (one subprocess per variant)")
    )
    results = measure_cuda(args) if cuda else measure_cpu(args, argv)
    (full, full_loss, full_grads), (ours, ours_loss, ours_grads) = results["full"], results["ours"]
    copy = args.micro_batch * args.completion_tokens * args.vocab * 4 / GiB
    print(f"one float32 (B, T, V) copy: {copy:.2f} GiB")
    print(f"peak full logits: {full / GiB:.2f} GiB")
    print(f"peak ours (chunked): {ours / GiB:.2f} GiB")
    print(f"ratio ours / full: {ours / full:.3f}  (goal <= 0.25)")
    gap = max(float((ours_grads[n] - g).abs().max()) for n, g in full_grads.items())
    scale = max(float(g.abs().max()) for g in full_grads.values())
    loss_gap = abs(float(full_loss - ours_loss))
    print(f"loss full {float(full_loss):.6f} ours {float(ours_loss):.6f} (|diff| {loss_gap:.1e})")
    print(f"max |gradient diff| {gap:.1e} (largest gradient {scale:.1e})")
    if loss_gap > 1e-5 or gap > 1e-5 * max(scale, 1.0):
        raise SystemExit("the chunked loss or gradients differ from the full-logits ones")


if __name__ == "__main__":
    main(sys.argv[1:])
