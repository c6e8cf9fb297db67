"""RL math as pure tensor functions, below both recipes and the analysis: no Lightning import.

* `bridge_pl.rl.logprobs`: `CompletionBatch` (prompts and completions as padded tensors) and the per-token
  log-probs of completions under a causal LM, each distinct prompt run once;
* `bridge_pl.rl.losses`: token log-probs and entropy, the clipped surrogate, k3 KL, the loss aggregations;
* `bridge_pl.rl.advantages`: group-relative advantages and the all-equal-group filter.

`bridge_pl.modules` (the GRPO recipe) and `bridge_pl.analysis` (influence) both build on these.
"""
