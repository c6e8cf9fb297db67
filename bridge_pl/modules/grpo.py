"""GRPO: reinforcement fine-tuning with group-relative advantages and an embedded rollout engine.

One training step per batch of P prompts (paper_spec §D.3)::

    _rollout      N completions per prompt from the engine (HF generate or in-process vLLM)
    _score        the weighted sum of the reward plug-ins (default: strict match of the first \\boxed{},
                  + the format bonus when rollout.format_reward_scale > 0; `bridge_pl.task.rewards`)
    _advantages   (r - group mean) / (group std + 1e-6), or batch std, or none
    _update       ppo_epochs x mini_batches optimizer steps of the clipped surrogate (token or GSPO sequence
                  ratios, optional dual clip and top-entropy token mask) + beta * k3 KL - entropy_coef * entropy

Manual optimization: every mini-batch is one optimizer step (``trainer.global_step`` counts those), and
after each the engine is marked stale, so the next generation pushes the new weights first. Runs on one
device and under `ModelParallelStrategy` (FSDP2, ``configs/trainer/fsdp2.yaml``); Lightning's FSDPStrategy
and DDP do not support several backward passes per step (DESIGN §4.6) and are refused with that advice.

Logged (TensorBoard, names as in TRL/verl): ``train/reward`` (mean weighted total), ``train/reward_std`` (mean
within-group std of the total), ``train/rewards/<name>`` (each reward's unweighted mean, by its ``name``; the
defaults are ``strict_match`` and ``format``), ``train/frac_reward_zero_std``, ``train/rollout_accuracy`` (share of
rollouts the ``accuracy_reward`` counts correct), ``train/completions/{mean,min,max}_length``,
``train/completions/mean_terminated_length``, ``train/completions/clipped_ratio``, ``train/entropy``, ``train/ppl``,
``train/loss`` (the optimized objective, mean over the step's optimizer steps), ``train/grad_norm``, ``train/lr``,
``train/sampling/logp_difference`` and ``train/sampling/logp_difference_max`` (mean and largest |trainer - engine|
log-prob of the completion tokens, when the engine returns log-probs), ``timing/{rollout,update,step}_s``,
``perf/tokens_per_sec``, ``perf/rollout_tokens_per_sec``; validation ``val/accuracy``, ``val/accuracy_op_<n>``,
``val/completion_length`` (greedy, format bonus 0, as the paper validates), and with ``rollout.val_samples`` = k > 1
``val/mean@k``, ``val/pass@1``, ``val/pass@k`` (k sampled answers per prompt; the same for ``test/``).

With ``loss.sampling_correction`` (train/inference mismatch): ``train/sampling/importance_sampling_ratio/{min,mean,
max}`` (TRL's names; over the loss-carrying tokens, or sequences for the sequence modes, before truncation or
masking) and ``train/sampling/masked_share`` (the *_mask modes) or ``train/sampling/truncated_share`` (*_truncate):
the share of those whose ratio left [sampling_ratio_min, sampling_ratio_max].

The loss statistics are token means over the whole training step (every micro-batch, mini-batch and rank), so
they do not depend on ``update.micro_batch_size``: ``train/clip_ratio/{low_mean,high_mean,region_mean}`` (share of
loss-carrying tokens whose ratio the clip binds), ``train/policy_loss`` (clipped surrogate per loss-carrying
token, after the top-entropy mask), ``train/entropy_bonus`` (with ``loss.entropy_coef`` > 0: coef x the entropy per
loss-carrying token) over the tokens that carry loss (rows not filtered, not truncation-masked, not dropped by
the KL mask); ``train/kl`` (k3) over the completion tokens of the rows that carry loss, before the KL mask;
``train/entropy`` and ``train/ppl`` over every completion token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info

from bridge_pl.data.prompt_sets import PromptSet
from bridge_pl.evaluation import evaluate_prompts, split_metrics
from bridge_pl.models.model_io import AttnImplementation, load_model, load_tokenizer
from bridge_pl.modules.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler
from bridge_pl.modules.parallel import fully_shard_decoder
from bridge_pl.modules.policy import (
    RUN_ID_KEY,
    LoraConfig,
    data_chat_template,
    export_errors,
    export_marker,
    finite_step,
    hf_output_dir,
    load_policy,
    model_path_errors,
    refuse_nonfinite_weights,
    save_hf_model,
    start_export_run,
    total_grad_norm,
)
from bridge_pl.rl.advantages import AdvantageScale, group_advantages, zero_std_groups
from bridge_pl.rl.logprobs import CompletionBatch, completion_logprobs
from bridge_pl.rl.losses import (
    Aggregation,
    ImportanceSamplingLevel,
    SamplingCorrection,
    aggregate,
    clipped_surrogate,
    high_entropy_mask,
    k3_kl,
    sampling_correction,
    sequence_kl_mask,
)
from bridge_pl.rollout.base import Completion, RolloutEngine, SamplingConfig
from bridge_pl.rollout.hf import HFEngine
from bridge_pl.task.base import Task, TaskError, get_task
from bridge_pl.task.rewards import (
    BooleanMatch,
    BoxedMatch,
    FormatBonus,
    NumericMatch,
    OverlongPunishment,
    Reward,
    score_rewards,
)

__all__ = ["GRPOLossConfig", "GRPOModule", "RolloutConfig", "RolloutRecord", "UpdateConfig"]

KEY = "model.init_args"
PAPER_OPTIMIZER = OptimizerConfig(lr=1e-6, betas=(0.9, 0.999), weight_decay=0.01)  # paper_spec §D.3


@dataclass(frozen=True)
class RolloutConfig:
    """How rollouts are drawn and which of them carry loss (the paper: N=32, temperature 1, 2560 tokens)."""

    num_generations: int = 8
    """Completions per prompt (N, the group size)."""
    sampling: SamplingConfig = SamplingConfig()  # frozen: a shared default is safe
    """Temperature, top-p/k, longest completion (the paper: 2560) and stop strings of the rollouts; the training
    log-probs use the same temperature."""
    format_reward_scale: float = 0.0
    """Bonus for a well-formed <think>...</think><answer>...</answer> completion (the paper: 0.05 for Llama-1B)."""
    mask_truncated: bool = False
    """Completions cut at max_new_tokens get no loss (DAPO's overlong filtering)."""
    filter_zero_std: bool = False
    """Leave groups with identical rewards out of the loss and its normalisation (DAPO's dynamic-sampling filter,
    without refilling the batch: the step trains on fewer groups)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling with refill (verl's ``filter_groups``): while the step holds fewer than P
    (``data.batch_size``) groups whose rewards are not all equal, draw P more training prompts at random and roll
    them out, at most `max_refill_rounds` times; the step then trains on the first P informative groups. Only groups
    with 0 < alpha < 1 move the policy (paper §4). If the rounds run out, the missing groups are filled with
    uninformative ones that carry no loss. Logged as ``train/dynamic_sampling/{rounds,prompts_drawn,
    informative_share,informative_groups}``. `GRPOModule.last_rollout` then holds the trained groups (the rollout-
    accuracy callbacks see those), its ``extras["refill"]`` the alpha of every group drawn. Needs a data module with
    ``draw_prompts`` (`PromptPoolDataModule`) and at least 2 x P training prompts."""
    max_refill_rounds: int = 4
    """Most extra rounds of P prompts per step under dynamic_sampling (verl's max_num_gen_batches less 1)."""
    val_max_new_tokens: int | None = None
    """Longest greedy completion in validation/test (default: sampling.max_new_tokens)."""
    val_samples: int = 1
    """k sampled answers per validation and test prompt besides the greedy one: logs ``val/mean@k`` (their mean
    accuracy), ``val/pass@1`` and ``val/pass@k`` (the unbiased estimator of Chen et al. 2021), which tell sharpening
    (mean@k up, pass@k down) from new solutions. 1: greedy accuracy only (the paper's metric)."""
    val_temperature: float = 1.0
    """Temperature of those samples (with the rollouts' top-p/k and stop strings; a fixed seed, so every validation
    draws with the same random numbers)."""

    def greedy(self) -> SamplingConfig:
        """The greedy settings of validation and test: the rollouts' stop strings, temperature 0."""
        length = self.val_max_new_tokens or self.sampling.max_new_tokens
        return replace(self.sampling, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=length)

    def val_sampled(self) -> SamplingConfig:
        """How the val_samples draws decode: the rollouts' sampling at val_temperature and the validation length."""
        length = self.val_max_new_tokens or self.sampling.max_new_tokens
        return replace(self.sampling, temperature=self.val_temperature, max_new_tokens=length)

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key and the fix."""
        issues = self.sampling.config_errors(f"{key}.sampling")
        if self.num_generations < 2:
            issues.append(f"{key}.num_generations={self.num_generations}: GRPO needs >= 2 rollouts per prompt")
        if self.format_reward_scale < 0:
            issues.append(f"{key}.format_reward_scale={self.format_reward_scale}: must be >= 0")
        if self.val_max_new_tokens is not None and self.val_max_new_tokens < 1:
            issues.append(f"{key}.val_max_new_tokens={self.val_max_new_tokens}: must be >= 1 (or null)")
        if self.max_refill_rounds < 1:
            issues.append(f"{key}.max_refill_rounds={self.max_refill_rounds}: must be >= 1")
        if self.val_samples < 1:
            issues.append(f"{key}.val_samples={self.val_samples}: must be >= 1 (1: greedy accuracy only)")
        if self.val_samples > 1 and self.val_temperature <= 0:
            issues.append(
                f"{key}.val_temperature={self.val_temperature}: val_samples > 1 needs a temperature > 0 (greedy "
                "draws would all be the same answer)"
            )
        return issues


@dataclass(frozen=True)
class GRPOLossConfig:
    """The policy objective (the paper: grpo aggregation, group std, clip 0.2, k3 KL with beta 0.001)."""

    aggregation: Aggregation = "grpo"
    """"grpo": mean of per-sequence token means (the paper); "dapo": token sum / tokens; "dr_grpo": token sum /
    (sequences x max_new_tokens)."""
    advantage_scale: AdvantageScale = "group"
    """Divide centred rewards by the group's unbiased std ("group"), the batch's ("batch") or nothing ("none")."""
    epsilon_low: float = 0.2
    """Clip range below 1 of the probability ratio."""
    epsilon_high: float = 0.2
    """Clip range above 1 (DAPO's clip-higher: 0.28)."""
    kl_coef: float = 0.001
    """Weight of the k3 KL to the reference model (0: no reference model is loaded)."""
    kl_clamp: float | None = 10.0
    """Clamp of the per-token k3 value (verl's low_var_kl: 10)."""
    kl_mask_threshold: float | None = None
    """Sequences whose mean KL reaches this get no loss (the paper's Llama-1B: 0.15)."""
    entropy_coef: float = 0.0
    """Entropy bonus: the loss minus entropy_coef x the token entropy, aggregated like the policy loss (`aggregation`)
    over the loss-carrying tokens (verl's ``actor.entropy_coeff``; the paper's Qwen runs: 0.001, Llama-1B: 0). The
    entropy then keeps its gradient (with ``update.logprob_chunk_tokens`` recomputed chunk by chunk as well)."""
    top_entropy_quantile: float | None = None
    """Only this top share (in (0, 1]) of the mini-batch's loss-carrying tokens by entropy carry the policy loss
    (the KL term stays on all of them); TRL's ``top_entropy_quantile``. null or 1.0: off. Costs one extra forward
    pass (no gradient) per mini-batch to rank the tokens."""
    importance_sampling_level: ImportanceSamplingLevel = "token"
    """"token": per-token ratios (PPO/GRPO); "sequence": GSPO's ratio exp(mean of the sequence's log-ratios) on all
    its tokens (TRL's ``importance_sampling_level``). GSPO (Zheng et al. 2025) pairs it with a much smaller clip
    range (epsilon_low 3e-4, epsilon_high 4e-4) and the "grpo" aggregation; the defaults here are not changed."""
    dual_clip_c: float | None = None
    """Dual-clip PPO: a negative-advantage token's loss is capped at dual_clip_c x |A| (must be > 1; verl's
    ``clip_ratio_c``, 3.0 there). null: off."""
    sampling_correction: SamplingCorrection = "none"
    """Train/inference mismatch correction (`bridge_pl.rl.losses.sampling_correction`, TRL's
    ``vllm_importance_sampling_mode``): the policy loss is weighted by pi_trainer / pi_engine of the sampled tokens,
    per token or per sequence, truncated to [sampling_ratio_min, sampling_ratio_max] ("token_truncate",
    "sequence_truncate": TIS) or zeroed outside it ("token_mask", "sequence_mask": MIS; TRL's default is
    sequence_mask). For the vLLM engine, whose bf16 kernels and top-p/k sampling give other log-probs than the
    trainer's; "none" for HFEngine, which samples from the policy's own forward pass (no mismatch to correct). Needs
    the engine's log-probs (VLLMEngine always returns them)."""
    sampling_ratio_min: float | None = None
    """Lower bound of the mismatch ratio (null: none; TRL's default)."""
    sampling_ratio_max: float | None = 3.0
    """Upper bound (cap) of the mismatch ratio (TRL: 3.0; verl's rollout_is_threshold: 2.0); null: none."""

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key and the fix."""
        issues = []
        if not 0 <= self.epsilon_low < 1:
            issues.append(f"{key}.epsilon_low={self.epsilon_low}: must be in [0, 1)")
        if self.epsilon_high < 0:
            issues.append(f"{key}.epsilon_high={self.epsilon_high}: must be >= 0")
        if self.kl_coef < 0:
            issues.append(f"{key}.kl_coef={self.kl_coef}: must be >= 0 (0 turns the KL term off)")
        if self.kl_mask_threshold is not None and self.kl_mask_threshold <= 0:
            issues.append(f"{key}.kl_mask_threshold={self.kl_mask_threshold}: must be > 0 (or null)")
        if self.kl_mask_threshold is not None and self.kl_coef == 0:
            issues.append(f"{key}.kl_mask_threshold needs a reference model: set {key}.kl_coef > 0")
        if self.entropy_coef < 0:
            issues.append(f"{key}.entropy_coef={self.entropy_coef}: must be >= 0 (0 turns the entropy bonus off)")
        if self.top_entropy_quantile is not None and not 0 < self.top_entropy_quantile <= 1:
            issues.append(
                f"{key}.top_entropy_quantile={self.top_entropy_quantile}: must be in (0, 1] (or null: every token)"
            )
        if self.importance_sampling_level not in ("token", "sequence"):
            issues.append(
                f"{key}.importance_sampling_level={self.importance_sampling_level!r}: choose token or sequence"
            )
        if self.dual_clip_c is not None and self.dual_clip_c <= 1:
            issues.append(f"{key}.dual_clip_c={self.dual_clip_c}: must be > 1 (or null for no dual clip)")
        modes = ("none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
        if self.sampling_correction not in modes:
            issues.append(f"{key}.sampling_correction={self.sampling_correction!r}: choose one of {', '.join(modes)}")
        low, high = self.sampling_ratio_min, self.sampling_ratio_max
        if low is not None and low < 0:
            issues.append(f"{key}.sampling_ratio_min={low}: must be >= 0 (or null)")
        if high is not None and high <= 0:
            issues.append(f"{key}.sampling_ratio_max={high}: must be > 0 (or null)")
        if low is not None and high is not None and low >= high:
            issues.append(f"{key}.sampling_ratio_min={low} must be below {key}.sampling_ratio_max={high}")
        return issues


@dataclass(frozen=True)
class UpdateConfig:
    """How one rollout batch becomes optimizer steps (the paper: one step per batch, fully on-policy)."""

    ppo_epochs: int = 1
    """Passes over each rollout batch (mu)."""
    mini_batches: int = 1
    """Optimizer steps per pass; the rollout batch is shuffled and cut into this many parts."""
    micro_batch_size: int = 8
    """Sequences per forward/backward (gradient accumulation inside a mini-batch; memory only)."""
    max_grad_norm: float | None = 1.0
    """Clip the total gradient norm before each step (the paper: 1.0; Llama-1B: 0.2); null: no clipping."""
    logprob_chunk_tokens: int | None = None
    """Compute log-probs and entropies from the hidden states this many tokens at a time, each chunk's logits
    recomputed in the backward (`bridge_pl.rl.chunked`): peak memory about 4 x chunk x vocabulary floats instead
    of several (B, T, vocabulary) copies, same numbers (the entropy bonus's gradient included). 512-1024 for 150k
    vocabularies; null: full logits. FSDP and LoRA on the output layer fall back to full logits."""

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key and the fix."""
        issues = [
            f"{key}.{name}={value}: must be >= 1"
            for name, value in (
                ("ppo_epochs", self.ppo_epochs),
                ("mini_batches", self.mini_batches),
                ("micro_batch_size", self.micro_batch_size),
            )
            if value < 1
        ]
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            issues.append(f"{key}.max_grad_norm={self.max_grad_norm}: must be > 0 (or null for no clipping)")
        if self.logprob_chunk_tokens is not None and self.logprob_chunk_tokens < 1:
            issues.append(f"{key}.logprob_chunk_tokens={self.logprob_chunk_tokens}: must be >= 1 (or null)")
        return issues


torch.serialization.add_safe_globals(
    [RolloutConfig, SamplingConfig, GRPOLossConfig, UpdateConfig, PAPER_OPTIMIZER.__class__]
    + [BoxedMatch, NumericMatch, BooleanMatch, FormatBonus, OverlongPunishment]  # in-process hparams hold rewards
)
ACCURACY_THRESHOLD = 1.0 - 1e-9  # a rollout is correct when the accuracy reward gives it its full score, 1


@dataclass
class RolloutRecord:
    """What one training step sampled and scored, for callbacks (`GRPOModule.last_rollout`); tensors on CPU."""

    step: int
    """Rollout step (0-based) that produced it."""
    prompts: list[str]
    """The P prompt texts."""
    ground_truth: list[str]
    """Expected answer of each prompt."""
    num_ops: list[int]
    """Operation count of each problem (-1 when unknown)."""
    completions: list[list[str]]
    """P lists of N completion texts."""
    rewards: torch.Tensor
    """(P, N) total rewards."""
    correct: torch.Tensor
    """(P, N) outcome: the accuracy reward (default strict match) at its full score, without bonuses."""
    advantages: torch.Tensor
    """(P, N) advantages."""
    lengths: torch.Tensor
    """(P, N) completion lengths in tokens."""
    truncated: torch.Tensor
    """(P, N) completions cut at max_new_tokens."""
    reward_values: dict[str, torch.Tensor] = field(default_factory=dict)
    """(P, N) unweighted value of each reward, by name (`rewards` is their weighted sum)."""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def rollout_accuracy(self) -> torch.Tensor:
        """(P,) alpha: the share of correct rollouts of each prompt."""
        return self.correct.float().mean(1)


@dataclass
class _Sequences:
    """One rollout batch on the device: B = P x N rows (prompt i's N rows are consecutive)."""

    batch: CompletionBatch  # prompts and completions, padded
    advantages: torch.Tensor  # (B,)
    weights: torch.Tensor  # (B,) 1 for rows that carry loss, 0 for filtered ones
    sampling_logprobs: torch.Tensor | None = None  # (B, C) from the engine
    old_logprobs: torch.Tensor | None = None  # (B, C)
    ref_logprobs: torch.Tensor | None = None  # (B, C)
    entropy_mask: torch.Tensor | None = None  # (B, C) top-entropy tokens of the current mini-batch

    def __len__(self) -> int:
        return len(self.batch)


@dataclass
class _Rollout:
    """P prompts (a batch of the data module) with their N completions each and their scores."""

    batch: dict[str, Any]  # the data module's batch; its per-prompt list columns are what rewards and records read
    prompt_ids: list[list[int]]  # P unpadded prompts
    groups: list[list[Completion]]  # P x N
    rewards: torch.Tensor  # (P, N) weighted totals
    correct: torch.Tensor  # (P, N) bool
    values: dict[str, torch.Tensor]  # (P, N) per reward

    def fields(self) -> tuple:
        return self.batch, self.prompt_ids, self.groups, self.rewards, self.correct, self.values

    @staticmethod
    def pick(picks: list[tuple[_Rollout, int]]) -> _Rollout:
        """The groups `picks` names (rollout, row), in that order, as one rollout (batch: its list columns only)."""
        first = picks[0][0]
        columns = [k for k, v in first.batch.items() if isinstance(v, list | tuple) and len(v) == len(first.groups)]
        return _Rollout(
            batch={k: [part.batch[k][i] for part, i in picks] for k in columns},
            prompt_ids=[part.prompt_ids[i] for part, i in picks],
            groups=[part.groups[i] for part, i in picks],
            rewards=torch.stack([part.rewards[i] for part, i in picks]),
            correct=torch.stack([part.correct[i] for part, i in picks]),
            values={name: torch.stack([part.values[name][i] for part, i in picks]) for name in first.values},
        )


class GRPOModule(L.LightningModule):
    """GRPO on iGSM prompts with rollouts from an embedded engine; the policy is saved as a Hugging Face directory.

    Takes batches from `bridge_pl.data.datamodules.PromptPoolDataModule` (left-padded prompts with their
    ground truth). ``trainer.max_steps`` counts optimizer steps: ppo_epochs x mini_batches per batch.

    Args:
        model_path: Local Hugging Face directory of the starting policy (an SFT checkpoint's ``hf_model``).
        ref_model_path: Reference model for the KL term (default: model_path; with LoRA the base model with
            adapters disabled, so no second copy is loaded).
        dtype: Dtype of the policy's master weights (float32 with ``trainer.precision: bf16-mixed`` on GPUs).
        attn_implementation: Attention kernel ("sdpa", "eager", "flash_attention_2", ...); None lets transformers
            choose.
        trust_remote_code: Allow modelling and tokenizer code shipped inside the model directory.
        gradient_checkpointing: Recompute activations in the backward pass.
        lora: Train LoRA adapters instead of all weights (None: full fine-tuning, as in the paper).
        engine: The rollout engine (default `HFEngine`); `bridge_pl.rollout.VLLMEngine` on GPUs.
        rollout: Group size, sampling, reward bonus and which rollouts carry loss.
        rewards: The reward plug-ins (`bridge_pl.task.rewards.Reward`): the total reward is the sum of each
            one's ``weight`` x value; names must be distinct. None: the task's own (`Task.default_rewards`; iGSM:
            `BoxedMatch` ``strict_match``, weight 1, the paper's; DyVal: its numeric or boolean match) plus
            `FormatBonus` (``format``) with weight ``rollout.format_reward_scale`` when that is > 0.
            With a list, ``rollout.format_reward_scale`` must be 0 (add a FormatBonus instead).
        accuracy_reward: Name of the reward that decides which rollouts are correct (``train/rollout_accuracy``,
            `RolloutRecord.correct`, the accuracy callbacks): those it scores >= 1 (its full score, unweighted).
            None: the first reward.
        task: The task of the prompts (`bridge_pl.task.base.get_task` name). None: the data module's (the one
            its files' dataset_config.json names); a config naming another task than the data's is refused. It
            supplies the default rewards and judges validation and test answers (`Task.is_correct`).
        loss: Aggregation, advantage scaling, clipping and KL.
        update: Epochs, mini-batches, micro-batch size and gradient clipping per rollout batch.
        optimizer: AdamW (the paper's RL values by default: lr 1e-6, betas (0.9, 0.999), weight decay 0.01).
        scheduler: Learning-rate schedule per optimizer step (default constant).
        sampling_seed: Seed of the rollouts' sampling and of the mini-batch shuffles.
        save_hf_every_n_steps: Also write the policy to ``<hf_output_dir>/step_<n>`` every n optimizer steps.
        hf_output_dir: Where the final policy is written (default: ``<log dir>/hf_model``).
        overwrite_output_dir: Let the export replace what `hf_output_dir` holds (a model, a dataset, other files).
            Without it the run is refused before training when the directory holds anything but this run's own
            earlier exports (a resumed run); the directory holding the starting model is refused even with it.
        max_nonfinite_skips: Optimizer steps with a non-finite loss or gradient norm to skip (gradients dropped,
            neither optimizer nor scheduler stepped) before the run stops with an error; 0 stops at the first.
            Skips are logged as ``train/nonfinite_skipped`` (cumulative).

    Example:
        ``bridge fit --config configs/grpo/tiny.yaml --model.init_args.rollout.num_generations 16``
    """

    def __init__(
        self,
        model_path: str,
        ref_model_path: str | None = None,
        dtype: Literal["float32", "bfloat16"] = "float32",
        attn_implementation: AttnImplementation | None = "sdpa",
        trust_remote_code: bool = False,
        gradient_checkpointing: bool = False,
        lora: LoraConfig | None = None,
        engine: RolloutEngine | None = None,
        rollout: RolloutConfig = RolloutConfig(),  # noqa: B008 (frozen dataclasses: shared defaults are safe)
        rewards: list[Reward] | None = None,
        accuracy_reward: str | None = None,
        task: str | None = None,
        loss: GRPOLossConfig = GRPOLossConfig(),  # noqa: B008
        update: UpdateConfig = UpdateConfig(),  # noqa: B008
        optimizer: OptimizerConfig = PAPER_OPTIMIZER,
        scheduler: SchedulerConfig = SchedulerConfig(),  # noqa: B008
        sampling_seed: int = 0,
        save_hf_every_n_steps: int | None = None,
        hf_output_dir: str | None = None,
        overwrite_output_dir: bool = False,
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        _validate_args(
            model_path, ref_model_path, lora, rollout, loss, update, optimizer, scheduler, save_hf_every_n_steps,
            max_nonfinite_skips, rewards, accuracy_reward, task,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["engine"])
        self.automatic_optimization = False
        self.model_path, self.ref_model_path = model_path, ref_model_path
        self.dtype_name, self.attn_implementation = dtype, attn_implementation
        self.trust_remote_code = trust_remote_code
        self.gradient_checkpointing, self.lora = gradient_checkpointing, lora
        self.engine = engine if engine is not None else HFEngine()
        _check_sampling_correction(loss, self.engine)
        self.rollout, self.loss, self.update = rollout, loss, update
        self.task_name, self.task = task, get_task(task)  # the data module's task replaces the default at setup
        self._default_rewards, self._accuracy_given = rewards is None, accuracy_reward
        self.rewards = list(rewards) if rewards is not None else default_rewards(rollout, self.task)
        self.accuracy_reward = accuracy_reward or self.rewards[0].name
        # Built in-process, hparams hold the reward objects; a resume reads them back with weights_only=True.
        torch.serialization.add_safe_globals([type(reward) for reward in self.rewards])
        self.optimizer_config, self.scheduler_config = optimizer, scheduler
        self.sampling_seed = sampling_seed
        self.save_hf_every_n_steps, self.hf_output_dir = save_hf_every_n_steps, hf_output_dir
        self.overwrite_output_dir = overwrite_output_dir
        self.run_id: str | None = None  # set at fit start (or from the checkpoint); recorded in every export
        self.model: torch.nn.Module | None = None  # built in configure_model, where FSDP2 can shard it
        self._reference = _Frozen(None)  # outside the module tree: not in checkpoints, reloaded from its path
        self.tokenizer = None
        self.rollout_step = 0  # rollout batches done (saved in checkpoints)
        self._prompt_source: Any = None  # the data module that refills steps (dynamic sampling)
        self.last_rollout: RolloutRecord | None = None
        self._eval_rows: list[dict[str, Any]] = []
        self.max_nonfinite_skips = max_nonfinite_skips
        self.nonfinite_skipped = 0

    # ------------------------------------------------------------------------------------------- model
    def _load_policy(self, gradient_checkpointing: bool) -> torch.nn.Module:
        """The model of `model_path` with this module's settings (and LoRA adapters), in train mode."""
        return load_policy(
            self.model_path, dtype=self.dtype_name, attn_implementation=self.attn_implementation,
            trust_remote_code=self.trust_remote_code, gradient_checkpointing=gradient_checkpointing, lora=self.lora,
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        """Take the task of the data module's files unless the config names one (a different one is refused)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        issues = self.task_errors(datamodule)
        if issues:
            raise TaskError("; ".join(issues))
        issues = self.refill_errors(datamodule)
        if issues:
            raise ValueError("; ".join(issues))
        self._prompt_source = datamodule if self.rollout.dynamic_sampling else None
        data_task = getattr(datamodule, "task", None)
        if not isinstance(data_task, Task):
            return
        self.task = data_task
        if self._default_rewards:
            self.rewards = default_rewards(self.rollout, self.task)
            self.accuracy_reward = self._accuracy_given or self.rewards[0].name

    def task_errors(self, datamodule: Any) -> list[str]:
        """Why this module cannot train on `datamodule`'s task ([] when it can); the CLI asks before training.

        `datamodule` must be set up (its ``task`` resolved from its files); a data module without one is fine.
        """
        data_task = getattr(datamodule, "task", None)
        if not isinstance(data_task, Task):
            return []
        if self.task_name is not None and data_task.name != self.task.name:
            return [
                f"{KEY}.task={self.task_name!r} but the data module's files are {data_task.name} data; set "
                f"{KEY}.task: {data_task.name} (or null: the data's own) or give {self.task.name} files"
            ]
        names = [reward.name for reward in default_rewards(self.rollout, data_task)]
        if self._default_rewards and self._accuracy_given is not None and self._accuracy_given not in names:
            return [
                f"{KEY}.accuracy_reward={self._accuracy_given!r}: the default rewards of the {data_task.name} "
                f"task are {', '.join(names)}"
            ]
        return []

    def data_errors(self, datamodule: Any) -> list[str]:
        """Why this module cannot train on `datamodule` ([] when it can): its task, and its prompts for refills."""
        return self.task_errors(datamodule) + self.refill_errors(datamodule)

    def refill_errors(self, datamodule: Any) -> list[str]:
        """Why dynamic sampling cannot refill from `datamodule` ([] when it can, or when it is off); set up first."""
        if not self.rollout.dynamic_sampling or datamodule is None:
            return []
        key = f"{KEY}.rollout.dynamic_sampling"
        if not callable(getattr(datamodule, "draw_prompts", None)):
            return [
                f"{key}=true refills steps with more training prompts, and {type(datamodule).__name__} cannot draw "
                "them (no draw_prompts method); use bridge_pl.data.datamodules.PromptPoolDataModule or set it false"
            ]
        prompts, size = len(datamodule.examples.get("train", [])), datamodule.batch_size
        if prompts < 2 * size:
            return [
                f"{key}=true: data.train_path holds {prompts} prompts, fewer than 2 x data.batch_size = {2 * size}, so "
                "a step could not draw a refill of new prompts; give more training prompts, lower data.batch_size, "
                "or set it false (rollout.filter_zero_std drops uninformative groups without refilling)"
            ]
        return []

    def configure_model(self) -> None:
        """Load the policy (and the reference model when the KL term needs one); once per process."""
        if self.model is not None:
            return
        _check_strategy(self._trainer)
        model = self._load_policy(self.gradient_checkpointing)
        ref = None
        if self.loss.kl_coef > 0 and not (self.lora is not None and self.ref_model_path is None):
            ref = load_model(self.ref_model_path or self.model_path, dtype=self.dtype_name,
                             attn_implementation=self.attn_implementation,
                             trust_remote_code=self.trust_remote_code).requires_grad_(False).eval()  # fmt: skip
        if self._trainer is not None and isinstance(self.trainer.strategy, ModelParallelStrategy):
            mesh = self.device_mesh["data_parallel"]
            fully_shard_decoder(model, mesh)
            if ref is not None:
                fully_shard_decoder(ref, mesh)
        self.model, self._reference = model.train(), _Frozen(ref)
        self.tokenizer = load_tokenizer(self.model_path, trust_remote_code=self.trust_remote_code)
        self.tokenizer.chat_template = data_chat_template(self._trainer) or self.tokenizer.chat_template

    @property
    def ref_model(self) -> torch.nn.Module | None:
        """The frozen KL reference (None without a KL term, or with LoRA, whose base model is the reference)."""
        return self._reference.module

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the policy's trainable parameters and a per-optimizer-step schedule."""
        optimizer = build_optimizer(self.model.parameters(), self.optimizer_config)
        scheduler = build_scheduler(optimizer, self.scheduler_config, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------------ engine
    def sample(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int
    ) -> list[list[Completion]]:
        """`n` completions of each prompt from the rollout engine, with the policy's current weights."""
        return self._bound_engine().generate(prompt_ids, n, sampling, policy=self.model, seed=seed)

    def _bound_engine(self) -> RolloutEngine:
        """The rollout engine, bound to the policy at its first use."""
        if not self.engine.bound:
            self.engine.trust_remote_code = self.trust_remote_code  # one setting for the policy and its engine
            self.engine.bind(self.model, self.tokenizer, self.model_path)
            self.engine.mark_stale()  # the policy may hold resumed weights that the engine has not seen
        return self.engine

    def on_fit_start(self) -> None:
        """Check the export directory, put the reference on the policy's device and precision, re-sync the engine."""
        start_export_run(self)  # before any rollout: a run that may not write its model does not start
        if self.ref_model is not None:
            self._reference = _Frozen(self.trainer.precision_plugin.convert_module(self.ref_model).to(self.device))
        if self.engine.bound:
            self.engine.mark_stale()  # a resumed run: push the restored weights before the first rollout

    # ---------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Rollout, score, advantages, then ppo_epochs x mini_batches optimizer steps."""
        start, steps_before = time.perf_counter(), self.trainer.global_step
        prompt_ids = _unpadded(batch["input_ids"], batch["attention_mask"])
        groups = self.sample(prompt_ids, self.rollout.num_generations, self.rollout.sampling, self._rollout_seed())
        rewards, correct, values = self._score(groups, batch)
        refill = None
        if self.rollout.dynamic_sampling:
            rollout = _Rollout(batch, prompt_ids, groups, rewards, correct, values)
            rollout, refill = self._refill(rollout)
            batch, prompt_ids, groups, rewards, correct, values = rollout.fields()
        rolled = time.perf_counter()
        advantages, weights = self._advantages(rewards, groups)
        sequences = self._sequences(prompt_ids, groups, advantages, weights)
        update_stats = self._update(sequences)
        done = time.perf_counter()
        self.last_rollout = self._record(batch, groups, rewards, correct, advantages, values)
        if refill is not None:
            self.last_rollout.extras["refill"] = refill
        self._log_step(sequences, rewards, correct, values, groups, update_stats, (start, rolled, done), refill)
        self.rollout_step += 1
        every, step = self.save_hf_every_n_steps, self.trainer.global_step
        if every and step // every > steps_before // every:  # a multiple of `every` was reached in this batch
            self.save_hf(Path(hf_output_dir(self.trainer, self.hf_output_dir)) / f"step_{step}")

    def _rollout_seed(self, refill_round: int = 0) -> int:
        """The sampling seed of this rank's current rollout step (distinct per seed, rank, step and refill round)."""
        key = (self.sampling_seed, self.global_rank, self.rollout_step)
        return hash(key if refill_round == 0 else (*key, refill_round)) % (2**31)

    def _refill(self, first: _Rollout) -> tuple[_Rollout, dict[str, Any]]:
        """Dynamic sampling: add rounds of P new prompts until P groups have unequal rewards; keep P groups.

        Each round every rank takes part in one all-reduce (does any rank still need groups?), so ranks that filled
        up early wait without generating. The kept groups are the informative ones in the order drawn, then, if the
        rounds ran out, uninformative ones of the first batch (their loss weight is 0: `_advantages`).
        """
        size, parts = len(first.groups), [first]
        seen = set(first.batch["index"])
        informative = int((~zero_std_groups(first.rewards)).sum())
        rounds, exhausted = 0, False
        while True:
            wants = informative < size and rounds < self.rollout.max_refill_rounds and not exhausted
            flag = torch.tensor([float(wants)], device=self.device)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if not flag.item():
                break
            if not wants:
                continue
            seed = hash((self.sampling_seed, self.global_rank, self.rollout_step, "refill", rounds + 1)) % (2**31)
            batch = self._prompt_source.draw_prompts(size, seed=seed, exclude=seen)
            if batch is None:  # every training prompt was drawn in this step
                exhausted = True
                continue
            rounds += 1
            seen.update(batch["index"])
            ids = _unpadded(batch["input_ids"], batch["attention_mask"])
            groups = self.sample(ids, self.rollout.num_generations, self.rollout.sampling, self._rollout_seed(rounds))
            part = _Rollout(batch, ids, groups, *self._score(groups, batch))
            parts.append(part)
            informative += int((~zero_std_groups(part.rewards)).sum())
        drawn = sum(len(p.groups) for p in parts)
        picks = [(p, i) for p in parts for i in range(len(p.groups)) if not zero_std_groups(p.rewards)[i]][:size]
        kept = len(picks)
        picks += [(first, i) for i in range(size) if zero_std_groups(first.rewards)[i]][: size - kept]
        stats = {"rounds": rounds, "prompts_drawn": drawn, "informative_share": informative / drawn,
                 "informative_groups": kept}  # fmt: skip
        stats["drawn_rollout_accuracy"] = torch.cat([p.correct.float().mean(1) for p in parts])  # (drawn,) alpha
        return _Rollout.pick(picks), stats

    def _score(
        self, groups: list[list[Completion]], batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(P, N) weighted total rewards, (P, N) outcomes of the accuracy reward, and (P, N) values by reward name.

        The rewards see the P x N completions flat (prompt i's N consecutive), each with its prompt's columns.
        """
        n = self.rollout.num_generations
        completions = [c for g in groups for c in g]
        truths = [t for t in batch["ground_truth"] for _ in range(n)]
        values, _ = score_rewards(
            self.rewards, [c.text for c in completions], truths, self._reward_columns(batch, completions),
            key=f"{KEY}.rewards",
        )  # fmt: skip
        by_name = {r.name: torch.tensor(v).view(len(groups), n) for r, v in zip(self.rewards, values, strict=True)}
        total = torch.zeros(len(groups), n)  # (P, N); summed in float32, as the hard-coded reward was
        for reward in self.rewards:
            total = total + reward.weight * by_name[reward.name]
        correct = by_name[self.accuracy_reward] >= ACCURACY_THRESHOLD
        return total, correct, by_name

    def _reward_columns(self, batch: dict[str, Any], completions: list[Completion]) -> dict[str, list[Any]]:
        """The per-completion columns rewards may read: the batch's per-prompt lists, token counts, length cap."""
        n, prompts = self.rollout.num_generations, len(batch["ground_truth"])
        columns = {
            key: [v for v in value for _ in range(n)]
            for key, value in batch.items()
            if key != "ground_truth" and isinstance(value, list | tuple) and len(value) == prompts
        }
        columns["completion_tokens"] = [len(c.token_ids) for c in completions]
        columns["max_new_tokens"] = [self.rollout.sampling.max_new_tokens] * len(completions)
        return columns

    def _advantages(self, rewards: torch.Tensor, groups: list[list[Completion]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, N) advantages and (P, N) loss weights (0 for filtered groups and, if asked, truncated rollouts)."""
        advantages = group_advantages(rewards, self.loss.advantage_scale)
        weights = torch.ones_like(rewards)
        if self.rollout.filter_zero_std or self.rollout.dynamic_sampling:  # refills' fillers carry no loss
            weights[zero_std_groups(rewards)] = 0.0
        if self.rollout.mask_truncated:
            truncated = torch.tensor([[c.finish_reason == "length" for c in g] for g in groups])
            weights[truncated] = 0.0
        return advantages, weights

    def _sequences(
        self,
        prompt_ids: list[list[int]],
        groups: list[list[Completion]],
        advantages: torch.Tensor,
        weights: torch.Tensor,
    ) -> _Sequences:
        """The rollout batch as padded tensors on the device (prompt i's N rows are consecutive)."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        n = self.rollout.num_generations
        completions = [c for g in groups for c in g]
        device = self.device
        seqs = _Sequences(
            batch=CompletionBatch.build(
                [ids for ids in prompt_ids for _ in range(n)], [c.token_ids for c in completions], pad, device
            ),  # fmt: skip
            advantages=advantages.flatten().to(device),
            weights=weights.flatten().to(device),
        )
        if all(c.logprobs is not None for c in completions):
            seqs.sampling_logprobs = torch.nn.utils.rnn.pad_sequence(
                [torch.tensor(c.logprobs or [0.0], dtype=torch.float32) for c in completions], batch_first=True
            ).to(device)  # (B, C)
        elif self.loss.sampling_correction != "none":
            raise ValueError(
                f"{KEY}.loss.sampling_correction={self.loss.sampling_correction!r} needs the engine's log-probs of "
                f"the sampled tokens, and {type(self.engine).__name__} returned none; use an engine that returns "
                "them (VLLMEngine, HFEngine(return_logprobs=True)) or set it to none"
            )
        return seqs

    # ------------------------------------------------------------------------------------------ update
    def _update(self, seqs: _Sequences) -> dict[str, torch.Tensor]:
        """ppo_epochs x mini_batches optimizer steps on one rollout batch; returns the step's statistics.

        ``loss`` and ``grad_norm`` are means over the optimizer steps; the others are token means over every
        micro-batch, mini-batch and rank of the step (sums / token counts, `_STAT_TOKENS`), so they do not depend
        on how the rollout batch is cut into micro-batches.
        """
        on_policy = self.update.ppo_epochs == 1 and self.update.mini_batches == 1
        if not on_policy:  # the ratio needs the sampling policy's log-probs; one pass has them for free
            seqs.old_logprobs = self._logprobs_no_grad(self.model, seqs)
        if self.loss.kl_coef > 0:
            seqs.ref_logprobs = self._reference_logprobs(seqs)
        generator = torch.Generator().manual_seed(hash((self.sampling_seed, self.rollout_step, 1)) % (2**31))
        sums: dict[str, torch.Tensor] = {}
        for _ in range(self.update.ppo_epochs):
            order = torch.randperm(len(seqs), generator=generator)
            for rows in order.chunk(self.update.mini_batches):
                _merge_stats(sums, self._optimizer_step(seqs, rows.to(self.device)))
        steps = self.update.ppo_epochs * self.update.mini_batches
        stats = {key: sums.pop(key) / steps for key in ("loss", "grad_norm")}
        totals = {}
        for op, keys in (("sum", [k for k in sorted(sums) if not k.endswith(("_min", "_max"))]),
                         ("min", [k for k in sorted(sums) if k.endswith("_min")]),
                         ("max", [k for k in sorted(sums) if k.endswith("_max")])):  # fmt: skip
            if not keys:
                continue
            values = torch.stack([torch.as_tensor(sums[k], dtype=torch.float32, device=self.device) for k in keys])
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                reduce_op = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]
                dist.all_reduce(values, op=reduce_op)  # every rank's sums and counts: the global token mean
            totals |= dict(zip(keys, values, strict=True))
        for key, value in totals.items():
            if key in _STAT_TOKENS:
                stats[key] = value / totals[_STAT_TOKENS[key]].clamp(min=1)
            elif key.endswith(("_min", "_max")) and totals.get(_STAT_UNITS.get(key, ""), 1) > 0:
                stats[key] = value
        return stats

    def _optimizer_step(self, seqs: _Sequences, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """One mini-batch: accumulate micro-batch gradients, clip, step; the loss, gradient norm and token sums."""
        optimizer = self.optimizers()
        mask = seqs.batch.completion_mask[rows] * seqs.weights[rows, None]  # (b, C)
        counts = self._global_counts(mask)
        if self.loss.top_entropy_quantile is not None and self.loss.top_entropy_quantile < 1:
            seqs.entropy_mask = self._high_entropy_mask(seqs, rows)
        stats: dict[str, torch.Tensor] = {}
        order = _group_order(seqs, rows)
        for micro in order.split(self.update.micro_batch_size):
            loss, micro_stats = self._micro_batch_loss(seqs, micro, counts)
            self.manual_backward(loss)
            _merge_stats(stats, micro_stats)
        grad_norm = total_grad_norm(self.model, self._trainer).detach()  # before clipping
        step = self.trainer.global_step + 1 if self._trainer is not None else 0
        skipped, bound = self.nonfinite_skipped, self.max_nonfinite_skips
        if not finite_step(stats["loss"], grad_norm, step=step, skipped=skipped, max_skips=bound):
            self.nonfinite_skipped += 1
            self.log("train/nonfinite_skipped", float(self.nonfinite_skipped))
        else:
            if self.update.max_grad_norm is not None:
                self.clip_gradients(
                    optimizer, gradient_clip_val=self.update.max_grad_norm, gradient_clip_algorithm="norm"
                )
            optimizer.step()
            self.lr_schedulers().step()
            self.engine.mark_stale()
        optimizer.zero_grad(set_to_none=True)  # a skipped step drops its gradients
        return stats | {"grad_norm": grad_norm}

    def _micro_batch_loss(
        self, seqs: _Sequences, rows: torch.Tensor, counts: tuple[float, float]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The micro-batch's share of the mini-batch loss, and token sums of its statistics (keys of `_STAT_TOKENS`).

        The clip shares, policy loss and entropy bonus are summed over the tokens that carry loss (``loss_tokens``:
        completion tokens of rows with weight 1 that the KL mask kept), the KL over the rows' completion tokens
        before the KL mask (so the sequences it drops still show in ``train/kl``), entropy and log-probs over every
        completion token (``tokens``: they describe the rollouts).
        """
        cfg = self.loss
        logprobs, entropy, width = self._forward(self.model, seqs, rows)  # (b, w)
        real = seqs.batch.completion_mask[rows, :width]  # (b, w)
        selected = real * seqs.weights[rows, None]  # (b, w) rows that carry loss
        old = logprobs.detach() if seqs.old_logprobs is None else seqs.old_logprobs[rows, :width]
        mask, stats = selected, {}
        if seqs.ref_logprobs is not None:
            kl = k3_kl(logprobs, seqs.ref_logprobs[rows, :width], cfg.kl_clamp)  # (b, w)
            if cfg.kl_mask_threshold is not None:
                mask = mask * sequence_kl_mask(kl.detach(), mask, cfg.kl_mask_threshold)[:, None]
            stats |= {"kl": (kl.detach() * selected).sum(), "kl_tokens": selected.sum()}
        per_token, clip = clipped_surrogate(
            logprobs, old, seqs.advantages[rows], mask, cfg.epsilon_low, cfg.epsilon_high,
            importance_sampling_level=cfg.importance_sampling_level, dual_clip_c=cfg.dual_clip_c,
        )  # fmt: skip
        if seqs.entropy_mask is not None:  # only the high-entropy tokens carry the policy term (TRL)
            per_token = per_token * seqs.entropy_mask[rows, :width]
        if cfg.sampling_correction != "none":  # TRL: after the entropy mask, before the KL term
            weights, ratio_stats = self._mismatch_weights(old, seqs.sampling_logprobs[rows, :width], real, mask)
            per_token = per_token * weights
            stats |= ratio_stats
        loss_tokens = mask.sum()
        stats |= {"policy_loss": (per_token * mask).sum().detach(), "loss_tokens": loss_tokens}
        stats |= {"clip_low": clip.low * loss_tokens, "clip_high": clip.high * loss_tokens}
        if seqs.ref_logprobs is not None:
            per_token = per_token + cfg.kl_coef * kl
        num_sequences, num_tokens = counts
        reduce = dict(num_sequences=num_sequences, num_tokens=num_tokens,
                      max_completion_length=self.rollout.sampling.max_new_tokens)  # fmt: skip
        loss = aggregate(per_token, mask, cfg.aggregation, **reduce)
        if cfg.entropy_coef > 0:
            # verl (verl/workers/actor/dp_actor.py, DataParallelPPOActor.update_policy): entropy_loss =
            # agg_loss(entropy, response_mask, loss_agg_mode); policy_loss = pg_loss - entropy_coeff * entropy_loss.
            loss = loss - cfg.entropy_coef * aggregate(entropy, mask, cfg.aggregation, **reduce)
            stats["entropy_bonus"] = cfg.entropy_coef * (entropy.detach() * mask).sum()
        stats |= {
            "loss": loss.detach(),
            "entropy": (entropy.detach() * real).sum(),
            "neg_logprob": -(logprobs.detach() * real).sum(),
            "tokens": real.sum(),
        }
        if seqs.sampling_logprobs is not None:
            gap = (logprobs.detach() - seqs.sampling_logprobs[rows, :width]).abs() * real
            stats |= {"logp_difference": gap.sum(), "logp_difference_max": gap.max()}
        return loss, stats

    def _mismatch_weights(
        self, old: torch.Tensor, sampling: torch.Tensor, real: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(b, w) train/inference mismatch weights of the policy loss, and sums of their statistics.

        The ratios are counted over the loss-carrying units (`mask`): tokens for the token modes, sequences for the
        sequence modes.
        """
        cfg = self.loss
        weights, ratio, outside = sampling_correction(
            old, sampling, real, cfg.sampling_correction, cfg.sampling_ratio_min, cfg.sampling_ratio_max
        )  # ratio, outside: (b, w) or (b, 1)
        units = mask if ratio.shape[1] > 1 else (mask.sum(1, keepdim=True) > 0).to(mask.dtype)
        chosen = ratio[units.bool()]
        big = torch.finfo(ratio.dtype).max
        return weights, {
            "is_ratio": (ratio * units).sum(),
            "is_outside": (outside * units).sum(),
            "is_units": units.sum(),
            "is_ratio_min": chosen.min() if chosen.numel() else ratio.new_tensor(big),
            "is_ratio_max": chosen.max() if chosen.numel() else ratio.new_tensor(-big),
        }

    def _forward(self, model: torch.nn.Module, seqs: _Sequences, rows: torch.Tensor, with_entropy: bool = True):
        """Completion-token log-probs (b, w), entropies (b, w) and width w of `rows`.

        The entropy has a gradient only when the entropy bonus needs one (then the full logits are computed).
        """
        entropy_grad = with_entropy and self.loss.entropy_coef > 0 and torch.is_grad_enabled()
        return completion_logprobs(
            model, seqs.batch, rows, temperature=self.rollout.sampling.temperature, with_entropy=with_entropy,
            entropy_grad=entropy_grad, chunk_tokens=self.update.logprob_chunk_tokens,
        )  # fmt: skip

    @torch.no_grad()
    def _high_entropy_mask(self, seqs: _Sequences, rows: torch.Tensor) -> torch.Tensor:
        """(B, C) the top-entropy tokens of mini-batch `rows` under the current policy (0 elsewhere).

        Ranked over the whole mini-batch on every rank (TRL gathers over ranks too), before its first micro-batch,
        so the mask does not depend on the micro-batch size.
        """
        entropy = torch.zeros_like(seqs.batch.completion_mask)
        for micro in rows.split(self.update.micro_batch_size):
            _, values, width = completion_logprobs(self.model, seqs.batch, micro, with_entropy=True,
                                                   temperature=self.rollout.sampling.temperature,
                                                   chunk_tokens=self.update.logprob_chunk_tokens)  # fmt: skip
            entropy[micro, :width] = values
        mask = torch.zeros_like(entropy)
        mask[rows] = seqs.batch.completion_mask[rows] * seqs.weights[rows, None]
        pool = entropy[mask.bool()]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            pool = _gather_variable(pool)
        return high_entropy_mask(entropy, mask, self.loss.top_entropy_quantile, pool=pool)

    @torch.no_grad()
    def _logprobs_no_grad(self, model: torch.nn.Module, seqs: _Sequences) -> torch.Tensor:
        """(B, C) log-probs of every completion token under `model`, in micro-batches."""
        out = torch.zeros_like(seqs.batch.completion_mask)
        for rows in torch.arange(len(seqs), device=self.device).split(self.update.micro_batch_size):
            logprobs, _, width = self._forward(model, seqs, rows, with_entropy=False)
            out[rows, :width] = logprobs
        return out

    def _reference_logprobs(self, seqs: _Sequences) -> torch.Tensor:
        if self.ref_model is not None:
            return self._logprobs_no_grad(self.ref_model, seqs)
        with self.model.disable_adapter():  # LoRA: the base model is the reference
            return self._logprobs_no_grad(self.model, seqs)

    def _global_counts(self, mask: torch.Tensor) -> tuple[float, float]:
        """(sequences, tokens) carrying loss in this mini-batch, averaged over data-parallel ranks.

        Gradients are averaged over ranks, so dividing by the mean count makes the result the global mean.
        """
        counts = torch.stack([(mask.sum(1) > 0).sum().float(), mask.sum()])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
            counts = counts / dist.get_world_size()
        return float(counts[0]), float(counts[1])

    # -------------------------------------------------------------------------------------- logging
    def _record(self, batch, groups, rewards, correct, advantages, values) -> RolloutRecord:
        return RolloutRecord(
            step=self.rollout_step,
            prompts=list(batch["prompts"]),
            ground_truth=list(batch["ground_truth"]),
            num_ops=list(batch["num_ops"]),
            completions=[[c.text for c in g] for g in groups],
            rewards=rewards,
            correct=correct,
            advantages=advantages,
            lengths=torch.tensor([[len(c.token_ids) for c in g] for g in groups]),
            truncated=torch.tensor([[c.finish_reason == "length" for c in g] for g in groups]),
            reward_values=values,
        )

    def _log_step(self, seqs, rewards, correct, values, groups, stats, times, refill=None) -> None:
        start, rolled, done = times
        lengths = seqs.batch.completion_mask.sum(1)
        truncated = torch.tensor([c.finish_reason == "length" for g in groups for c in g], device=lengths.device)
        terminated = lengths[~truncated]
        tokens = float(lengths.sum() + seqs.batch.prompt_lengths().sum())
        metrics = {
            "train/reward": rewards.mean(),
            "train/reward_std": rewards.std(dim=1).mean(),
            "train/frac_reward_zero_std": zero_std_groups(rewards).float().mean(),
            "train/rollout_accuracy": correct.float().mean(),
            "train/completions/mean_length": lengths.mean(),
            "train/completions/min_length": lengths.min(),
            "train/completions/max_length": lengths.max(),
            "train/completions/mean_terminated_length": terminated.mean() if len(terminated) else lengths.new_zeros(()),
            "train/completions/clipped_ratio": truncated.float().mean(),
            "train/policy_loss": stats["policy_loss"],
            "train/loss": stats["loss"],
            "train/entropy": stats["entropy"],
            "train/ppl": torch.exp(stats["neg_logprob"]),
            "train/clip_ratio/low_mean": stats["clip_low"],
            "train/clip_ratio/high_mean": stats["clip_high"],
            "train/clip_ratio/region_mean": stats["clip_low"] + stats["clip_high"],
            "train/grad_norm": stats["grad_norm"],
            "train/lr": self.optimizers().optimizer.param_groups[0]["lr"],
            "timing/rollout_s": rolled - start,
            "timing/update_s": done - rolled,
            "timing/step_s": done - start,
            "perf/tokens_per_sec": tokens / max(done - start, 1e-9),
            "perf/rollout_tokens_per_sec": float(lengths.sum()) / max(rolled - start, 1e-9),
        }
        metrics |= {f"train/rewards/{name}": value.mean() for name, value in values.items()}
        if refill is not None:
            for key in ("rounds", "prompts_drawn", "informative_share", "informative_groups"):
                metrics[f"train/dynamic_sampling/{key}"] = refill[key]
        if "kl" in stats:
            metrics["train/kl"] = stats["kl"]
        if "entropy_bonus" in stats:
            metrics["train/entropy_bonus"] = stats["entropy_bonus"]
        if "logp_difference" in stats:
            metrics["train/sampling/logp_difference"] = stats["logp_difference"]
            metrics["train/sampling/logp_difference_max"] = stats["logp_difference_max"]
        if "is_ratio" in stats:
            name = "masked_share" if self.loss.sampling_correction.endswith("mask") else "truncated_share"
            metrics["train/sampling/importance_sampling_ratio/mean"] = stats["is_ratio"]
            metrics[f"train/sampling/{name}"] = stats["is_outside"]
            for end in ("min", "max"):
                if f"is_ratio_{end}" in stats:
                    metrics[f"train/sampling/importance_sampling_ratio/{end}"] = stats[f"is_ratio_{end}"]
        metrics = {k: (v.float() if torch.is_tensor(v) else torch.tensor(float(v))) for k, v in metrics.items()}
        self.log_dict(metrics, prog_bar=False, batch_size=len(groups), sync_dist=True)
        self.log("reward", metrics["train/reward"], prog_bar=True, logger=False, batch_size=len(groups))

    # ------------------------------------------------------------------------------ validation / test
    def on_validation_epoch_start(self) -> None:
        """Start collecting the validation rows."""
        self._eval_rows = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Greedy (and with rollout.val_samples > 1, sampled) completions of the validation prompts, task-scored."""
        self._eval_rows += self._greedy_rows(batch)

    def on_validation_epoch_end(self) -> None:
        """Log the greedy validation accuracy (and its breakdowns) over every rank."""
        self._log_eval("val")

    def on_test_epoch_start(self) -> None:
        """Start collecting the test rows."""
        self._eval_rows = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Greedy (and with rollout.val_samples > 1, sampled) completions of the test prompts (paper_spec §D.4)."""
        self._eval_rows += self._greedy_rows(batch)

    def on_test_epoch_end(self) -> None:
        """Log the greedy test accuracy (and its breakdowns) over every rank."""
        self._log_eval("test")

    def _greedy_rows(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The batch's prompts scored by the one evaluator (`bridge_pl.evaluation.evaluate_prompts`): greedily, and
        with ``rollout.val_samples`` > 1 sampled that many times too."""
        prompts = PromptSet.from_batch(batch, _unpadded(batch["input_ids"], batch["attention_mask"]), task=self.task)
        rows = evaluate_prompts(
            self._bound_engine(), prompts, self.rollout.greedy(), samples=self.rollout.val_samples,
            sampled=self.rollout.val_sampled(), batch_size=len(prompts),
            seed=self.sampling_seed + 1 + int(batch["index"][0]),  # the same draws at every validation
        )  # fmt: skip
        return [{k: v for k, v in row.items() if k != "completion"} for row in rows]  # gathered over ranks: keep small

    def _log_eval(self, split: str) -> None:
        """Accuracy over every rank's rows (each prompt once: a distributed sampler may repeat a few)."""
        rows = self._eval_rows
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, rows)
            rows = list({row["index"]: row for part in parts for row in part}.values())
        if not rows:
            return
        metrics = split_metrics(rows, split, samples=self.rollout.val_samples)
        if split == "test":
            self.log_dict({k: torch.tensor(v) for k, v in metrics.items()}, batch_size=len(rows), rank_zero_only=True)
            return
        # Validation is written at the number of rollout batches done, so the value before training (Lightning's
        # sanity pass with trainer.num_sanity_val_steps -1, whose own logging is dropped) is step 0 and the one
        # after the k-th batch is step k. self.log_dict makes them visible to callbacks (checkpoint monitors).
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics(metrics, step=self.rollout_step)
        if self.trainer.sanity_checking:
            rank_zero_info(f"{split} accuracy before training: {100 * metrics[f'{split}/accuracy']:.1f}%")
            return
        self.log_dict({k: torch.tensor(v) for k, v in metrics.items()}, batch_size=len(rows), logger=False)

    # ------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the rollout-step count and the run id in the checkpoint."""
        checkpoint["grpo"] = {"rollout_step": self.rollout_step}
        checkpoint[RUN_ID_KEY] = self.run_id

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the rollout-step count and run id; the engine must then take the restored weights."""
        self.rollout_step = checkpoint.get("grpo", {}).get("rollout_step", 0)
        self.run_id = checkpoint.get(RUN_ID_KEY) or self.run_id  # a resumed run may write over its own exports
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("ref_model.")]:  # checkpoints written before the reference
            del state[key]  # left the module tree; it is reloaded from its path
        if self.engine.bound:
            self.engine.mark_stale()

    def on_train_end(self) -> None:
        """Write the final policy as a Hugging Face directory."""
        self.save_hf(hf_output_dir(self.trainer, self.hf_output_dir))

    def save_hf(self, out_dir: str | Path) -> Path:
        """Write the policy (LoRA merged) and tokenizer to `out_dir`; collective under FSDP2, rank 0 writes."""
        refuse_nonfinite_weights(self.model, out_dir, self._trainer)
        return save_hf_model(
            self.model, self.tokenizer, out_dir, self._trainer, rebuild=lambda: self._load_policy(False),
            marker=export_marker(self),
        )  # fmt: skip

    def export_errors(self, run_id: str | None = None) -> list[str]:
        """Why the final model may not be written to its directory ([] when it may); the CLI asks before training."""
        return export_errors(
            self._trainer, self.hf_output_dir, run_id=run_id or self.run_id, overwrite=self.overwrite_output_dir,
            inputs={"model_path": self.model_path, "ref_model_path": self.ref_model_path}, key=KEY,
        )  # fmt: skip


class _Frozen:
    """Holds a module outside its owner's module tree: Lightning neither checkpoints, moves nor mode-switches it."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.module = module


# Each token-sum statistic of `_micro_batch_loss` and the token count it is divided by.
_STAT_TOKENS = {
    "policy_loss": "loss_tokens",
    "clip_low": "loss_tokens",
    "clip_high": "loss_tokens",
    "entropy_bonus": "loss_tokens",
    "kl": "kl_tokens",
    "entropy": "tokens",
    "neg_logprob": "tokens",
    "logp_difference": "tokens",
    "is_ratio": "is_units",
    "is_outside": "is_units",
}
# Statistics reduced by min or max over micro-batches and ranks, and the count that must be > 0 for them to exist.
_STAT_UNITS = {"is_ratio_min": "is_units", "is_ratio_max": "is_units", "logp_difference_max": "tokens"}


def _merge_stats(into: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
    """Add `new`'s statistics to `into`: ``*_min`` / ``*_max`` keys by min / max, the others summed."""
    for key, value in new.items():
        if key not in into:
            into[key] = value
        elif key.endswith("_min"):
            into[key] = torch.minimum(torch.as_tensor(into[key]), torch.as_tensor(value))
        elif key.endswith("_max"):
            into[key] = torch.maximum(torch.as_tensor(into[key]), torch.as_tensor(value))
        else:
            into[key] = into[key] + value


def _gather_variable(values: torch.Tensor) -> torch.Tensor:
    """The 1-D `values` of every rank, concatenated (ranks may hold different counts)."""
    count = torch.tensor([values.numel()], device=values.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.cat([values, values.new_zeros(longest - values.numel())])
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts, strict=True)])


def _group_order(seqs: _Sequences, rows: torch.Tensor) -> torch.Tensor:
    """`rows` ordered by prompt, longest completion first within a prompt.

    Micro-batches then hold whole groups, whose shared prompt is computed once (`completion_logprobs`), and
    completions of similar lengths, so little compute goes to padding.
    """
    lengths = seqs.batch.completion_mask[rows].sum(1)
    rows = rows[torch.argsort(lengths, descending=True, stable=True)]
    return rows[torch.argsort(seqs.batch.prompt_index[rows], stable=True)]


def _unpadded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """The real tokens of each row of a padded batch."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]


def _check_sampling_correction(loss: GRPOLossConfig, engine: RolloutEngine) -> None:
    """Refuse the mismatch correction with an HF engine that returns no log-probs (it has no mismatch to correct)."""
    if loss.sampling_correction != "none" and isinstance(engine, HFEngine) and not engine.return_logprobs:
        raise ValueError(
            f"{KEY}.loss.sampling_correction={loss.sampling_correction!r} needs the engine's log-probs, and HFEngine "
            "returns them only with return_logprobs: true. HFEngine samples from the policy's own forward pass, so "
            f"there is no train/inference mismatch to correct: set {KEY}.loss.sampling_correction: none (it is meant "
            "for bridge_pl.rollout.VLLMEngine)"
        )


def _check_strategy(trainer: L.Trainer | None) -> None:
    """Refuse strategies under which several backward passes per step break (FSDP1, DDP)."""
    if trainer is None:
        return
    strategy = trainer.strategy
    if isinstance(strategy, FSDPStrategy) or (isinstance(strategy, DDPStrategy) and trainer.world_size > 1):
        raise ValueError(
            f"trainer.strategy={type(strategy).__name__}: GRPO takes several optimizer steps per batch (manual "
            "optimization), which Lightning supports under ModelParallelStrategy (FSDP2) only; use "
            "--config configs/trainer/fsdp2.yaml for several devices, or one device"
        )


def default_rewards(rollout: RolloutConfig, task: Task | None = None) -> list[Reward]:
    """The task's rewards (iGSM: the paper's strict match of the first ``\\boxed{}``), plus the format bonus when on."""
    rewards: list[Reward] = list(get_task(task).default_rewards())
    if rollout.format_reward_scale > 0:
        rewards.append(FormatBonus(weight=rollout.format_reward_scale))
    return rewards


def _reward_errors(
    rewards: list[Reward] | None, accuracy_reward: str | None, rollout: RolloutConfig, task: str | None = None
) -> list[str]:
    """Every problem of the reward list and the accuracy reward's name, by YAML key."""
    key = f"{KEY}.rewards"
    if rewards is None:
        try:
            names, issues = [r.name for r in default_rewards(rollout, get_task(task))], []
        except TaskError as err:
            return [f"{KEY}.task: {err}"]
    elif not rewards:
        return [f"{key}=[]: give at least one reward (or null for the default strict match)"]
    else:
        issues = [
            f"{key}[{i}]: {reward!r} is not a bridge_pl.task.rewards.Reward; subclass it (class_path/init_args)"
            for i, reward in enumerate(rewards)
            if not isinstance(reward, Reward)
        ]
        if issues:
            return issues
        for i, reward in enumerate(rewards):
            issues += reward.config_errors(f"{key}[{i}].init_args")
        names = [r.name for r in rewards]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            where = "; ".join(f"{n!r}: " + ", ".join(f"rewards[{i}]" for i, m in enumerate(names) if m == n)
                              for n in duplicates)  # fmt: skip
            issues.append(f"{key}: reward names must be distinct ({where}); set init_args.name on all but one")
        if rollout.format_reward_scale:
            issues.append(
                f"{KEY}.rollout.format_reward_scale={rollout.format_reward_scale} does nothing when {key} is set: "
                "add a bridge_pl.task.rewards.FormatBonus with that weight to the list and set it to 0"
            )
    if accuracy_reward is not None and accuracy_reward not in names:
        choices = ", ".join(dict.fromkeys(names))
        issues.append(f"{KEY}.accuracy_reward={accuracy_reward!r}: no reward has that name; choose one of {choices}")
    return issues


def _validate_args(
    model_path, ref_model_path, lora, rollout, loss, update, optimizer, scheduler, save_every, max_nonfinite_skips=0,
    rewards=None, accuracy_reward=None, task=None,
) -> None:  # fmt: skip
    """Raise one ValueError listing every invalid argument by its YAML key, before any model is loaded."""
    issues = model_path_errors(model_path, f"{KEY}.model_path")
    if ref_model_path is not None:
        issues += model_path_errors(ref_model_path, f"{KEY}.ref_model_path")
    if lora is not None:
        issues += lora.config_errors(f"{KEY}.lora")
    issues += (
        rollout.config_errors(f"{KEY}.rollout")
        + loss.config_errors(f"{KEY}.loss")
        + update.config_errors(f"{KEY}.update")
    )
    issues += optimizer.config_errors(f"{KEY}.optimizer") + scheduler.config_errors(f"{KEY}.scheduler")
    if save_every is not None and save_every < 1:
        issues.append(f"{KEY}.save_hf_every_n_steps={save_every}: must be >= 1 (or null for no saves)")
    if max_nonfinite_skips < 0:
        issues.append(f"{KEY}.max_nonfinite_skips={max_nonfinite_skips}: must be >= 0 (0 stops at the first)")
    issues += _reward_errors(rewards, accuracy_reward, rollout, task)
    if issues:
        raise ValueError("invalid GRPO configuration:\n  " + "\n  ".join(issues))
