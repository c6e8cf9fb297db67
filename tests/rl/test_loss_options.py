"""The optional loss terms against numbers worked out by hand, and against TRL's code on the same tensors.

Entropy bonus (verl), top-entropy token mask (TRL), GSPO sequence ratios (TRL), dual clip (verl), train/inference
mismatch correction (TRL's vLLM importance sampling). TRL is read from its source file (``trl/trainer/grpo_trainer.py``)
without importing it: its import needs datasets/accelerate.
"""

from __future__ import annotations

import ast
import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bridge_pl.modules.grpo import GRPOLossConfig
from bridge_pl.rl.losses import aggregate, clipped_surrogate, high_entropy_mask, sampling_correction, token_entropy


def trl_source() -> str:
    spec = importlib.util.find_spec("trl")
    if spec is None or spec.origin is None:
        pytest.skip("trl is not installed")
    return (Path(spec.origin).parent / "trainer" / "grpo_trainer.py").read_text()


def trl_method(name: str):
    """A GRPOTrainer method compiled from TRL's own source (no TRL import), to call with a stand-in `self`."""
    tree = ast.parse(trl_source())
    (method,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    method.decorator_list = []
    namespace = {"torch": torch}
    exec(compile(ast.Module([method], type_ignores=[]), "grpo_trainer.py", "exec"), namespace)
    return namespace[name]


# ----------------------------------------------------------------------------------------------- entropy bonus
def test_entropy_bonus_is_aggregated_like_the_policy_loss():
    big = -1e4  # a logit that leaves its token out of the distribution
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, big, big]],  # row 0: uniform over 4 (ln 4), then over 2 (ln 2)
            [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],  # row 1: ln 4, then padding
        ]
    )
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    entropy = token_entropy(logits)
    counts = {"num_sequences": 2, "num_tokens": 3, "max_completion_length": 2}
    ln2, ln4 = math.log(2), math.log(4)
    # grpo: mean of row means ((ln4 + ln2) / 2 = 1.0397, ln4 = 1.3863) = 1.2130
    assert float(aggregate(entropy, mask, "grpo", **counts)) == pytest.approx(((ln4 + ln2) / 2 + ln4) / 2)
    # dapo: (ln4 + ln2 + ln4) / 3 = 1.1552; dr_grpo: same sum / (2 x 2) = 0.8664
    assert float(aggregate(entropy, mask, "dapo", **counts)) == pytest.approx((2 * ln4 + ln2) / 3)
    assert float(aggregate(entropy, mask, "dr_grpo", **counts)) == pytest.approx((2 * ln4 + ln2) / 4)


def test_entropy_bonus_gradient_raises_the_entropy():
    # p = (1/4, 3/4): H = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623; dH/dz_i = -p_i (ln p_i + H):
    #   z_0: -0.25 (-1.3863 + 0.5623) = +0.2060, z_1: -0.75 (-0.2877 + 0.5623) = -0.2060
    logits = torch.tensor([[[0.0, math.log(3.0)]]], requires_grad=True)
    coef = 0.001
    loss = -coef * aggregate(token_entropy(logits), torch.ones(1, 1), "grpo", num_sequences=1, num_tokens=1,
                             max_completion_length=1)  # fmt: skip
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-coef * 0.562335, abs=1e-9)
    # the loss's gradient is -coef dH/dz: descending it moves probability to the rarer token (entropy goes up)
    assert logits.grad.flatten().tolist() == pytest.approx([-coef * 0.205991, coef * 0.205991], abs=1e-8)


# -------------------------------------------------------------------------------------------- top-entropy mask
def test_high_entropy_mask_by_hand():
    entropy = torch.tensor([[0.1, 0.9, 0.5, 7.0], [0.3, 0.7, 0.2, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])  # the 7.0 and 0.0 are padding
    # loss tokens sorted: 0.1 0.2 0.3 0.5 0.7 0.9; quantile 0.5 -> cut at the 0.5 quantile, (0.3 + 0.5) / 2 = 0.4
    assert high_entropy_mask(entropy, mask, 0.5).tolist() == [[0, 1, 1, 0], [0, 1, 0, 0]]
    # quantile 1/3 -> cut at the 2/3 quantile: position 5 x 2/3 = 3.33 -> 0.5 + 0.33 x 0.2 = 0.5667: 0.7 and 0.9
    assert high_entropy_mask(entropy, mask, 1 / 3).tolist() == [[0, 1, 0, 0], [0, 1, 0, 0]]
    assert high_entropy_mask(entropy, mask, 1.0).tolist() == mask.tolist()  # keep all: the cut is the minimum
    assert high_entropy_mask(entropy, torch.zeros_like(mask), 0.5).sum() == 0


@pytest.mark.parametrize("quantile", [0.2, 0.5, 0.8, 1.0])
def test_high_entropy_mask_matches_trl(quantile):
    get_high_entropy_mask = trl_method("get_high_entropy_mask")

    class OneProcess:  # accelerate's collectives on one process
        @staticmethod
        def pad_across_processes(tensor, dim=0, pad_index=0):
            return tensor

        @staticmethod
        def gather(tensor):
            return tensor

    class Trainer:
        accelerator = OneProcess()

    torch.manual_seed(0)
    entropy = torch.rand(6, 11) * 3
    entropy[0, :3] = entropy[0, 3]  # ties at the cut
    mask = (torch.rand(6, 11) > 0.3).float()
    expected = get_high_entropy_mask(Trainer(), entropy, mask, 1 - quantile)  # TRL passes 1 - top_entropy_quantile
    assert torch.equal(high_entropy_mask(entropy, mask, quantile).bool(), expected)


# -------------------------------------------------------------------------------------------------------- GSPO
def test_sequence_ratio_by_hand():
    # row 0: log-ratios (ln 2, 0) -> mean ln 2 / 2 -> ratio sqrt 2 = 1.4142 on both tokens; A = +1 clips at 1.2
    # row 1: log-ratio ln 1.1 on its one token (the 5.0 is padding) -> ratio 1.1, inside the clip range
    logprobs = torch.tensor([[math.log(2.0), 0.0], [math.log(1.1), 5.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = clipped_surrogate(
        logprobs, torch.zeros(2, 2), torch.tensor([1.0, 1.0]), mask, importance_sampling_level="sequence"
    )
    assert loss.tolist() == [pytest.approx([-1.2, -1.2]), pytest.approx([-1.1, 0.0])]
    assert float(stats.high) == pytest.approx(2 / 3)  # the two tokens of row 0 of the three
    loss[1].sum().backward()
    # d(-exp(mean))/d logp_0 = -1.1 / 1 on row 1's only token; padding gets nothing
    assert logprobs.grad[1].tolist() == pytest.approx([-1.1, 0.0])


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("quantile", [1.0, 0.6])
def test_loss_and_gradient_match_trl_compute_loss(level, quantile):
    """TRL's `_compute_loss` path for loss_type="grpo", beta > 0, on the same tensors: its lines, copied below, are
    checked to be in TRL's source, then run next to ours."""
    source = trl_source()
    trl_lines = [
        "log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)",
        "coef_2 = torch.clamp(coef_1, 1 - self.epsilon_low, 1 + self.epsilon_high)",
        "per_token_loss = -torch.min(per_token_loss1, per_token_loss2)",
        "per_token_loss = per_token_loss * entropy_mask",
        "per_token_loss = per_token_loss + self.beta * per_token_kl",
        "loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()",
        "torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1",
    ]
    for line in trl_lines:
        assert line in source, line
    torch.manual_seed(1)
    b, c, eps_low, eps_high, beta = 5, 7, 0.2, 0.28, 0.04
    mask = (torch.rand(b, c) > 0.2).float()
    mask[:, 0] = 1.0
    old = -torch.rand(b, c) * 2
    ref = -torch.rand(b, c) * 2
    start = old + torch.randn(b, c) * 0.3
    advantages = torch.randn(b)
    entropy = torch.rand(b, c)

    # TRL (grpo_trainer.py, _compute_loss), with self.* replaced by the values above
    trl_logps = start.clone().requires_grad_(True)
    entropy_mask = high_entropy_mask(entropy, mask, quantile).bool() if quantile < 1 else None
    log_ratio = trl_logps - old
    if level == "token":
        log_importance_weights = log_ratio
    else:
        log_importance_weights = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_importance_weights)
    per_token_kl = torch.exp(ref - trl_logps) - (ref - trl_logps) - 1
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token_loss = -torch.min(coef_1 * advantages.unsqueeze(1), coef_2 * advantages.unsqueeze(1))
    if entropy_mask is not None:
        per_token_loss = per_token_loss * entropy_mask
    per_token_loss = per_token_loss + beta * per_token_kl
    trl_loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    trl_loss.backward()

    # ours, composed as GRPOModule._micro_batch_loss composes it (k3 unclamped, as TRL)
    from bridge_pl.rl.losses import k3_kl

    logps = start.clone().requires_grad_(True)
    per_token, _ = clipped_surrogate(logps, old, advantages, mask, eps_low, eps_high, importance_sampling_level=level)
    if entropy_mask is not None:
        per_token = per_token * entropy_mask
    per_token = per_token + beta * k3_kl(logps, ref, clamp=None)
    loss = aggregate(per_token, mask, "grpo", num_sequences=b, num_tokens=float(mask.sum()), max_completion_length=c)
    loss.backward()
    assert float(loss) == pytest.approx(float(trl_loss), abs=1e-6)
    assert torch.allclose(logps.grad, trl_logps.grad, atol=1e-7)


# --------------------------------------------------------------------------------------------------- dual clip
def test_dual_clip_caps_negative_advantages():
    # epsilon 0.2, c = 2:
    #   r=3,   A=-1: PPO loss -min(-3, -1.2) = 3 -> capped at c |A| = 2 (gradient 0)
    #   r=1.5, A=-1: 1.5 < 2, unchanged (gradient -(-1) r = 1.5)
    #   r=3,   A=+1: -min(3, 1.2) = -1.2, positive advantages are never capped (gradient 0: clipped)
    #   r=0.5, A=-2: -min(-1, -1.6) = 1.6 < c |A| = 4, unchanged (clipped low, gradient 0)
    logprobs = torch.tensor([[math.log(3.0)], [math.log(1.5)], [math.log(3.0)], [math.log(0.5)]], requires_grad=True)
    advantages = torch.tensor([-1.0, -1.0, 1.0, -2.0])
    loss, _ = clipped_surrogate(logprobs, torch.zeros(4, 1), advantages, torch.ones(4, 1), dual_clip_c=2.0)
    assert loss.flatten().tolist() == pytest.approx([2.0, 1.5, -1.2, 1.6])
    loss.sum().backward()
    assert logprobs.grad.flatten().tolist() == pytest.approx([0.0, 1.5, 0.0, 0.0])
    plain, _ = clipped_surrogate(logprobs.detach(), torch.zeros(4, 1), advantages, torch.ones(4, 1))
    assert plain.flatten().tolist() == pytest.approx([3.0, 1.5, -1.2, 1.6])


# ------------------------------------------------------------------------------------ train/inference mismatch
def test_mismatch_correction_by_hand():
    # trainer log-probs (0, -1, -2 | padding) against the engine's (-1, -1, 0): ratios e^1 = 2.718, 1, e^-2 = 0.135
    trainer = torch.tensor([[0.0, -1.0, -2.0, 9.0]])
    engine = torch.tensor([[-1.0, -1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    e = math.e
    weights, ratio, outside = sampling_correction(trainer, engine, mask, "token_truncate", 0.5, 2.0)
    assert weights[0, :3].tolist() == pytest.approx([2.0, 1.0, 0.5])  # clipped into [0.5, 2]
    assert ratio[0].tolist() == pytest.approx([e, 1.0, e**-2, 1.0])  # padding: ratio 1
    assert outside[0].tolist() == [True, False, True, False]
    weights, _, _ = sampling_correction(trainer, engine, mask, "token_mask", 0.5, 2.0)
    assert weights[0, :3].tolist() == pytest.approx([0.0, 1.0, 0.0])  # outside [0.5, 2]: no policy loss
    # sequence: the product e^1 x 1 x e^-2 = e^-1 = 0.368 on every token
    weights, ratio, outside = sampling_correction(trainer, engine, mask, "sequence_truncate", None, 3.0)
    assert ratio.shape == (1, 1) and float(ratio) == pytest.approx(e**-1)
    assert weights.tolist() == [pytest.approx([e**-1] * 4)] and not outside.any()
    weights, _, outside = sampling_correction(trainer, engine, mask, "sequence_mask", 0.5, 3.0)
    assert weights.tolist() == [[0.0] * 4] and outside.all()  # 0.368 < 0.5: the whole sequence is masked
    weights, _, _ = sampling_correction(trainer, engine, mask, "none")
    assert weights.tolist() == [[1.0] * 4]
    nan = torch.tensor([[float("nan"), -1.0, 0.0, 0.0]])  # a token the engine could not score: ratio 1
    assert sampling_correction(trainer, nan, mask, "token_mask", None, None)[1][0, 0] == 1.0


def trl_mismatch_block():
    """The body of TRL's ``if self.use_vllm and self.vllm_importance_sampling_correction:`` block that computes
    ``vllm_importance_sampling_ratio`` (in `_generate_and_score_completions`), compiled from TRL's source."""
    tree = ast.parse(trl_source())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "vllm_importance_sampling_correction" in ast.unparse(node.test):
            body = ast.unparse(ast.Module(node.body, type_ignores=[]))
            if "vllm_importance_sampling_ratio = torch.exp(logps_diff)" in body:
                return compile(ast.Module(node.body, type_ignores=[]), "grpo_trainer.py", "exec")
    pytest.fail("TRL's vLLM importance-sampling block was not found in grpo_trainer.py")


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
@pytest.mark.parametrize("bounds", [(None, 3.0), (0.5, 1.5)], ids=["trl-default", "two-sided"])
def test_mismatch_correction_matches_trl(mode, bounds):
    torch.manual_seed(3)
    b, c = 6, 9
    mask = (torch.rand(b, c) > 0.25).float()
    trainer = -torch.rand(b, c) * 3
    engine = (
        trainer + torch.randn(b, c) * 0.4
    )  # mismatches of +-0.4 nats: some token and sequence ratios leave [0.5, 3]
    engine[0, 1] = float("nan")
    low, high = bounds
    trainer_self = SimpleNamespace(
        vllm_importance_sampling_mode=mode,
        vllm_importance_sampling_clip_min=low,
        vllm_importance_sampling_clip_max=high,
    )
    namespace = {"torch": torch, "math": math, "self": trainer_self, "completion_mask": mask, "tool_mask": None,
                 "old_per_token_logps": trainer, "sampling_per_token_logps": engine}  # fmt: skip
    exec(trl_mismatch_block(), namespace)
    expected = namespace["vllm_importance_sampling_ratio"]  # (B, C) or (B, 1)
    weights, _, outside = sampling_correction(trainer, engine, mask, mode, low, high)
    assert torch.allclose(weights, expected.expand_as(weights), atol=1e-7)
    if bounds == (0.5, 1.5):
        assert outside.any() and not outside.all()  # the bounds bind somewhere: the comparison is not vacuous


# ------------------------------------------------------------------------------------------------- validation
def test_bad_option_values_name_their_keys():
    bad = GRPOLossConfig(entropy_coef=-0.1, top_entropy_quantile=0.0, dual_clip_c=1.0,
                         importance_sampling_level="sentence")  # fmt: skip
    issues = "\n".join(bad.config_errors("model.init_args.loss"))
    for key in ("entropy_coef", "top_entropy_quantile", "dual_clip_c", "importance_sampling_level"):
        assert f"model.init_args.loss.{key}" in issues, key
    assert GRPOLossConfig(entropy_coef=0.001, top_entropy_quantile=1.0, dual_clip_c=3.0).config_errors("k") == []
    assert GRPOLossConfig(top_entropy_quantile=1.5).config_errors("k")
    bad = GRPOLossConfig(sampling_correction="token", sampling_ratio_min=-1.0, sampling_ratio_max=0.0)
    issues = "\n".join(bad.config_errors("model.init_args.loss"))
    for key in ("sampling_correction", "sampling_ratio_min", "sampling_ratio_max"):
        assert f"model.init_args.loss.{key}" in issues, key
    assert "below" in "\n".join(GRPOLossConfig(sampling_ratio_min=2.0, sampling_ratio_max=1.0).config_errors("k"))


def test_mismatch_correction_is_refused_where_it_cannot_work(model_dir):
    from bridge_pl.modules.grpo import GRPOModule
    from bridge_pl.rollout import HFEngine

    loss = GRPOLossConfig(sampling_correction="sequence_mask")
    with pytest.raises(ValueError, match="no train/inference mismatch to correct"):
        GRPOModule(str(model_dir), loss=loss)  # the default HFEngine returns no log-probs
    GRPOModule(str(model_dir), loss=loss, engine=HFEngine(return_logprobs=True))  # allowed: it can be measured


def trl_util(name: str):
    """A function of ``trl/trainer/utils.py`` compiled from TRL's source, its Triton path switched off (CPU)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or spec.origin is None:
        pytest.skip("trl is not installed")
    tree = ast.parse((Path(spec.origin).parent / "trainer" / "utils.py").read_text())
    wanted = {name, "selective_log_softmax", "entropy_from_logits"}  # what it calls
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    for function in functions:
        function.decorator_list = []
    namespace = {"torch": torch, "F": torch.nn.functional, "is_triton_available": lambda: False,
                 "_supports_trl_loss_kernel": lambda *a, **k: False}  # fmt: skip
    exec(compile(ast.Module(functions, type_ignores=[]), "utils.py", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_and_entropy_with_gradient_match_trl(temperature):
    """Our log-probs and entropy (full logits and chunked from hidden states) against TRL's
    ``selective_log_softmax_and_entropy`` on the same logits: values and the gradient of logp + 0.1 x entropy."""
    from bridge_pl.rl.chunked import chunked_logprobs_and_entropy
    from bridge_pl.rl.losses import token_logprobs

    trl = trl_util("selective_log_softmax_and_entropy")
    torch.manual_seed(4)
    hidden = torch.randn(3, 5, 8)
    head = torch.nn.Linear(8, 40)
    targets = torch.randint(0, 40, (3, 5))
    results = []
    for variant in ("trl", "full", "chunked"):
        head.zero_grad()
        h = hidden.clone().requires_grad_(True)
        if variant == "chunked":
            logp, entropy = chunked_logprobs_and_entropy(h, head.weight, head.bias, targets, temperature, 4,
                                                         entropy_grad=True)  # fmt: skip
        elif variant == "full":
            logits = head(h)
            logp, entropy = token_logprobs(logits, targets, temperature), token_entropy(logits, temperature)
        else:
            logp, entropy = trl(head(h), targets, entropy_requires_grad=True, temperature=temperature)
        (logp.sum() + 0.1 * entropy.sum()).backward()
        results.append((logp.detach(), entropy.detach(), h.grad, head.weight.grad.clone()))
    reference = results[0]
    for ours in results[1:]:
        for a, b in zip(ours, reference, strict=True):
            assert torch.allclose(a, b, atol=1e-6)
