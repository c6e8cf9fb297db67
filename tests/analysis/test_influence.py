"""Influence math on a tiny model: the first-order prediction against the real one-step change, the GRPO
gradient identity of paper_spec §E.2, the count sketch, the bins and the parameter subsets."""

from __future__ import annotations

import math
import random

import pytest
import torch

from bridge_pl.analysis.accuracy import BINS, accuracy_histogram
from bridge_pl.analysis.influence import (
    CountSketch,
    GradientSpace,
    InfluenceTerms,
    influence_by_bin,
    select_parameters,
)
from bridge_pl.analysis.probe import (
    ProbeRollouts,
    _mean_gradient,
    alpha_window,
    measure_influence,
    one_step_changes,
    one_step_terms,
)
from bridge_pl.data.prompt_sets import PromptSet
from bridge_pl.models.model_io import init_model_dir, load_model
from bridge_pl.rl.advantages import group_advantages
from bridge_pl.rl.logprobs import CompletionBatch, completion_logprobs
from bridge_pl.rl.losses import aggregate, clipped_surrogate
from bridge_pl.rollout import Completion

PAD = 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-1m", seed=5)


def rollouts(patterns: list[list[bool]], seed: int) -> ProbeRollouts:
    """Prompts of random tokens with N completions of random tokens (lengths 3-9) and the given outcomes."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(10, 1500) for _ in range(rng.randint(4, 8))] for _ in patterns]
    groups = [
        [Completion([rng.randrange(10, 1500) for _ in range(rng.randint(3, 9))], "", "stop") for _ in pattern]
        for pattern in patterns
    ]
    probe = PromptSet("test", prompts, ["0"] * len(patterns), [1] * len(patterns))
    return ProbeRollouts(probe, groups, patterns)


def group_gradients(model, space, prompt, group, correct):
    """(G+, G-): the mean gradients of the right and the wrong rollouts of one prompt."""
    right = [c.token_ids for c, ok in zip(group, correct, strict=True) if ok]
    wrong = [c.token_ids for c, ok in zip(group, correct, strict=True) if not ok]
    return (_mean_gradient(model, space, prompt, right, PAD, "cpu", 8),
            _mean_gradient(model, space, prompt, wrong, PAD, "cpu", 8))  # fmt: skip


def target_objective(model, target: ProbeRollouts) -> torch.Tensor:
    """J = mean over target samples of (r - mean r of the prompt) * log pi(o | q): its gradient is T."""
    prompts, completions, weights = [], [], []
    for prompt, group, correct in zip(target.probe.prompt_ids, target.completions, target.correct, strict=True):
        mean = sum(correct) / len(correct)
        for completion, ok in zip(group, correct, strict=True):
            prompts.append(prompt)
            completions.append(completion.token_ids)
            weights.append(float(ok) - mean)
    batch = CompletionBatch.build(prompts, completions, PAD)
    logprobs, _, width = completion_logprobs(model, batch)
    sequence = (logprobs * batch.completion_mask[:, :width]).sum(1)  # log pi(o | q), not its token mean
    return (sequence * torch.tensor(weights)).sum() / len(weights)


def test_influence_predicts_the_one_step_change_of_the_target_objective(model_dir):
    model = load_model(model_dir).eval()
    space = GradientSpace(select_parameters(model, "all"))
    train = rollouts([[True, False, True, False], [True, False, False, False]], seed=1)
    target = rollouts([[True, True, False, False], [False, True, False, False]], seed=2)
    terms, _ = measure_influence(model, space, train, target, PAD, micro_batch_size=3)
    for index, term in enumerate(terms):
        prompt, group, correct = train.probe.prompt_ids[index], train.completions[index], train.correct[index]
        g_plus, g_minus = group_gradients(model, space, prompt, group, correct)
        direction = math.sqrt(term.alpha * (1 - term.alpha)) * (g_plus - g_minus)  # the GRPO step direction
        eta = 2e-3 / float(direction.norm())  # a step of norm 0.002
        with torch.no_grad():
            before = float(target_objective(model, target))
            offset = 0
            for param in space.params:
                param += eta * direction[offset : offset + param.numel()].view_as(param)
                offset += param.numel()
            after = float(target_objective(model, target))
            offset = 0
            for param in space.params:  # undo the step
                param -= eta * direction[offset : offset + param.numel()].view_as(param)
                offset += param.numel()
        predicted, actual = eta * term.influence, after - before
        assert predicted != 0 and math.copysign(1, actual) == math.copysign(1, predicted)
        assert actual == pytest.approx(predicted, rel=0.05)


def test_the_grpo_gradient_is_the_influence_direction(model_dir):
    # paper_spec §E.2: with binary rewards, ratio 1 and no KL, -grad of the per-prompt GRPO loss equals
    # sqrt(alpha (1 - alpha)) (G+ - G-) times sqrt((N - 1) / N) (the unbiased std of the code).
    model = load_model(model_dir).eval()
    space = GradientSpace(select_parameters(model, "all"))
    train = rollouts([[True, False, False, False, True, False, False, False]], seed=3)
    prompt, group, correct = train.probe.prompt_ids[0], train.completions[0], train.correct[0]
    n, alpha = len(group), sum(correct) / len(correct)
    batch = CompletionBatch.build([prompt] * n, [c.token_ids for c in group], PAD)
    logprobs, _, width = completion_logprobs(model, batch)
    mask = batch.completion_mask[:, :width]
    advantages = group_advantages(torch.tensor([correct], dtype=torch.float32), eps=0.0)[0]
    per_token, _ = clipped_surrogate(logprobs, logprobs.detach(), advantages, mask)
    loss = aggregate(per_token, mask, "grpo", num_sequences=n, num_tokens=float(mask.sum()), max_completion_length=9)
    grpo_direction = -space.vector(loss)
    g_plus, g_minus = group_gradients(model, space, prompt, group, correct)
    expected = math.sqrt(alpha * (1 - alpha)) * math.sqrt((n - 1) / n) * (g_plus - g_minus)
    assert torch.allclose(grpo_direction, expected, rtol=1e-3, atol=1e-6)


def test_the_measured_one_step_change_is_the_likelihood_ratio_and_matches_the_prediction(model_dir):
    # What scripts/validate_influence.py compares: the measured change after one SGD step of the GRPO loss on a
    # probe prompt, and lr x I(q). With T taken from the same rollouts as the measurement, they agree to first
    # order (the GRPO step is sqrt((N - 1) / N) sqrt(alpha (1 - alpha)) (G+ - G-), see the test above).
    model = load_model(model_dir).eval()
    space = GradientSpace(select_parameters(model, "all"))
    train = rollouts([[True, False, False, True], [True, True, True, True], [False, True, False, False]], seed=6)
    fresh = rollouts([[True, False, True, False], [False, False, True, False]], seed=7)
    lr = 1e-3
    before = [param.detach().clone() for param in model.parameters()]
    terms = one_step_terms(model, train, fresh, PAD, lr, batch_size=3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # restored exactly
    assert terms[1] is None  # alpha = 1: every advantage is 0, no step
    changes = one_step_changes(model, train, fresh, PAD, lr, batch_size=3)
    assert changes[1] is None
    assert [changes[0], changes[2]] == pytest.approx([float(terms[0].mean()), float(terms[2].mean())])
    influence, _ = measure_influence(model, space, train, fresh, PAD)
    # by hand for prompt 0: one explicit SGD step, then (pi_new / pi_old - 1)(r - b) per fresh rollout
    prompt, group, correct = train.probe.prompt_ids[0], train.completions[0], train.correct[0]
    batch = CompletionBatch.build([prompt] * 4, [c.token_ids for c in group], PAD)
    logprobs, _, width = completion_logprobs(model, batch)
    mask = batch.completion_mask[:, :width]
    advantages = group_advantages(torch.tensor([correct], dtype=torch.float32))[0]
    per_token, _ = clipped_surrogate(logprobs, logprobs.detach(), advantages, mask)
    loss = aggregate(per_token, mask, "grpo", num_sequences=4, num_tokens=float(mask.sum()), max_completion_length=9)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    fresh_batch = CompletionBatch.build([fresh.probe.prompt_ids[i] for i in (0, 0, 0, 0, 1, 1, 1, 1)],
                                        [c.token_ids for group in fresh.completions for c in group], PAD)  # fmt: skip
    # r - b, b the mean reward of the prompt's other rollouts: 1 - 1/3, 0 - 2/3, ...; 0 - 1/3, 1 - 0
    centred = torch.tensor([2 / 3, -2 / 3, 2 / 3, -2 / 3, -1 / 3, -1 / 3, 1.0, -1 / 3])

    def sequence_logprobs() -> torch.Tensor:
        out, _, w = completion_logprobs(model, fresh_batch)
        return (out * fresh_batch.completion_mask[:, :w]).sum(1)

    with torch.no_grad():
        before = sequence_logprobs()
        for param, grad in zip(model.parameters(), grads, strict=True):
            param -= lr * grad
        after = sequence_logprobs()
        for param, grad in zip(model.parameters(), grads, strict=True):
            param += lr * grad
    # (log-likelihoods near -50 in float32 differ by ~1e-5 between batchings: terms are ~1e-3)
    assert torch.allclose(terms[0], ((after - before).exp() - 1) * centred, rtol=1e-2, atol=2e-5)
    for index in (0, 2):  # T takes r - mean r, the measurement r - b_-i = N / (N - 1) (r - mean r): a factor 4 / 3
        predicted = lr * math.sqrt(3 / 4) * influence[index].influence * 4 / 3
        assert changes[index] == pytest.approx(predicted, rel=0.05)


def test_alpha_window_keeps_the_first_prompts_in_range():
    probe = rollouts([[True, False], [False, False], [True, True], [True, False], [False, True]], seed=8)
    assert alpha_window(probe, 0.25, 0.75, limit=2) == [0, 3]
    assert alpha_window(probe, 0.0, 0.0, limit=5) == [1]


def test_prompts_with_alpha_zero_or_one_have_no_influence(model_dir):
    model = load_model(model_dir).eval()
    space = GradientSpace(select_parameters(model, "lm_head"))
    train = rollouts([[False, False, False], [True, True, True], [True, False, False]], seed=4)
    target = rollouts([[True, False, False]], seed=5)
    terms, _ = measure_influence(model, space, train, target, PAD)
    assert terms[0].influence == 0 and terms[0].k_plus is None and terms[0].k_minus is not None
    assert terms[1].influence == 0 and terms[1].k_minus is None and terms[1].k_plus is not None
    assert terms[2].influence != 0
    assert terms[2].co_influence == pytest.approx(terms[2].k_plus - terms[2].k_minus)


def test_count_sketch_keeps_inner_products(model_dir):
    # E<Sa, Sb> = <a, b> with standard deviation at most sqrt(2 / dim) |a| |b|: check within 4 of those.
    model = load_model(model_dir).eval()
    params = select_parameters(model, "all")
    dim = 1 << 16
    exact, sketched = GradientSpace(params), GradientSpace(params, sketch_dim=dim, seed=0)
    train = rollouts([[True, False, True, False]] * 3, seed=6)
    target = rollouts([[True, False, False, False], [True, True, False, False]], seed=7)
    exact_terms, t_exact = measure_influence(model, exact, train, target, PAD)
    sketch_terms, t_sketch = measure_influence(model, sketched, train, target, PAD)
    assert t_sketch.shape == (dim,) and t_exact.shape == (exact.size,)
    assert float(t_sketch.norm()) == pytest.approx(float(t_exact.norm()), rel=0.05)  # norms preserved
    for index, (a, b) in enumerate(zip(exact_terms, sketch_terms, strict=True)):
        prompt, group = train.probe.prompt_ids[index], train.completions[index]
        g_plus, g_minus = group_gradients(model, exact, prompt, group, train.correct[index])
        diff = g_plus - g_minus
        bound = 4 * math.sqrt(2 / dim) * float(t_exact.norm()) * float(diff.norm())
        assert abs(b.co_influence - a.co_influence) <= bound
    sketch = CountSketch(8, seed=1)
    assert torch.equal(sketch("w", torch.ones(5)), CountSketch(8, seed=1)("w", torch.ones(5)))  # fixed


def test_parameter_subsets(model_dir):
    model = load_model(model_dir)
    head = select_parameters(model, "lm_head")
    last = select_parameters(model, "last_layers", num_layers=1)
    names = [n for n, _ in last]
    assert [n for n, _ in head] == ["model.embed_tokens.weight"]  # tied output layer
    assert names[0] == "model.embed_tokens.weight" and "model.norm.weight" in names
    assert all(".layers.3." in n for n in names[1:] if ".layers." in n) and any(".layers.3." in n for n in names)
    assert len(select_parameters(model, "all")) == len(list(model.parameters()))


def test_bins_and_histogram():
    hist = accuracy_histogram([0.0, 1 / 8, 2 / 8, 4 / 8, 5 / 8, 7 / 8, 1.0, 1.0])
    assert list(hist["counts"].values()) == [1, 1, 1, 1, 1, 1, 2]
    assert hist["informative_mass"] == pytest.approx(5 / 8)
    terms = [InfluenceTerms(0.5, 2.0, 4.0, 3.0, -1.0), InfluenceTerms(0.5, 1.0, 2.0, 1.0, -1.0)]
    by_bin = influence_by_bin(terms)
    assert set(by_bin) == set(BINS)
    assert by_bin["(0.4,0.6]"] == {
        "prompts": 2, "influence_sum": 3.0, "influence_mean": 1.5, "co_influence_mean": 3.0,
        "k_plus_mean": 2.0, "k_minus_mean": -1.0,
    }  # fmt: skip
    assert by_bin["0"]["influence_mean"] is None
