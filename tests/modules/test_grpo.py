"""GRPOModule on a tiny model: learning direction, metrics, update schedule, KL paths, resume, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bridge_pl.data.datamodules import PromptPoolDataModule
from bridge_pl.data.io import write_dataset
from bridge_pl.models.model_io import load_model, load_tokenizer
from bridge_pl.modules import OptimizerConfig
from bridge_pl.modules.grpo import GRPOLossConfig, GRPOModule, RolloutConfig, UpdateConfig
from bridge_pl.modules.policy import LoraConfig
from bridge_pl.rollout import HFEngine, SamplingConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

# Every question has the answer 7, so learning needs no arithmetic: "7" must become likelier than "8".
BAGS = ("Bag", "Box", "Crate", "Tote", "Case", "Pouch")
QUESTIONS = [f"The number of each {bag}'s Pen equals 7. How many Pen does each {bag} have?" for bag in BAGS]


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory) -> Path:
    rows = [{"query": q, "final_answer": 7, "num_ops": 1} for q in QUESTIONS]
    path = tmp_path_factory.mktemp("prompts") / "pool"
    write_dataset(path, rows, config={"note": "test prompts"})
    return path


def trainer(tmp_path, max_steps, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
        logger=L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="grpo", default_hp_metric=False),
        enable_checkpointing=False,
    )
    return L.Trainer(**(defaults | kwargs))


def data(model_dir, prompts_dir, **kwargs) -> PromptPoolDataModule:
    return PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=3, **kwargs)


def sequence_logprob(model, tokenizer, question: str, completion: str) -> float:
    from bridge_pl.data.prompts import format_prompt

    prompt = tokenizer(format_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    target = tokenizer(completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + target])).logits[0, len(prompt) - 1 : -1]
    return float(torch.log_softmax(logits, -1).gather(-1, torch.tensor(target)[:, None]).sum())


def test_updates_move_probability_from_wrong_to_right_answers(model_dir, prompts_dir, tmp_path, scripted_engine):
    tokenizer = load_tokenizer(model_dir)
    module = GRPOModule(
        str(model_dir),
        engine=scripted_engine(),
        rollout=RolloutConfig(num_generations=4),
        loss=GRPOLossConfig(kl_coef=0.0),
        optimizer=OptimizerConfig(lr=3e-4),  # at 3e-3 Adam overshoots on some tokenizers' models and the gap flips
    )
    right = "\nSo x = 7.\n</think>\n<answer>\nThe final answer is \\boxed{7}.\n</answer>"
    wrong = right.replace("7", "8")

    def gap(model):  # log p(right) - log p(wrong), averaged over the questions
        model.eval()
        return sum(
            sequence_logprob(model, tokenizer, q, right) - sequence_logprob(model, tokenizer, q, wrong)
            for q in QUESTIONS
        ) / len(QUESTIONS)

    gap_before = gap(load_model(model_dir))
    trainer(tmp_path, max_steps=4).fit(module, datamodule=data(model_dir, prompts_dir))
    assert gap(module.model) > gap_before + 2.0  # the rewarded answer became much likelier than the unrewarded one
    record = module.last_rollout
    assert record.rewards.shape == (3, 4) and record.rewards[:, 0].eq(1).all() and record.rewards[:, 1].eq(0).all()
    assert torch.allclose(record.advantages[:, 0], torch.full((3,), 0.866025), atol=1e-4)  # sqrt(3)/2: N=4, a=1/2


def test_fit_with_the_hf_engine_logs_every_metric_and_saves_the_policy(model_dir, prompts_dir, tmp_path):
    module = GRPOModule(
        str(model_dir),
        rollout=RolloutConfig(num_generations=3, sampling=SamplingConfig(max_new_tokens=12), format_reward_scale=0.1),
        update=UpdateConfig(micro_batch_size=4),
        optimizer=OptimizerConfig(lr=1e-3),
    )
    before = copy.deepcopy(load_model(model_dir).state_dict())
    run = trainer(tmp_path, max_steps=2)
    run.fit(module, datamodule=data(model_dir, prompts_dir))
    assert module.rollout_step == 2 and run.global_step == 2
    saved = load_model(Path(run.log_dir) / "hf_model").state_dict()
    changed = [k for k in before if not torch.equal(before[k], saved[k])]
    assert len(changed) == len(before)  # every weight moved (full fine-tuning)
    events = EventAccumulator(str(next(Path(run.log_dir).glob("events*"))))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/reward",
        "train/reward_std",
        "train/rewards/strict_match",
        "train/rewards/format",
        "train/frac_reward_zero_std",
        "train/rollout_accuracy",
        "train/completions/mean_length",
        "train/completions/min_length",
        "train/completions/max_length",
        "train/completions/mean_terminated_length",
        "train/completions/clipped_ratio",
        "train/kl",
        "train/entropy",
        "train/ppl",
        "train/clip_ratio/low_mean",
        "train/clip_ratio/high_mean",
        "train/clip_ratio/region_mean",
        "train/policy_loss",
        "train/loss",
        "train/grad_norm",
        "train/lr",
        "timing/rollout_s",
        "timing/update_s",
        "timing/step_s",
        "perf/tokens_per_sec",
        "perf/rollout_tokens_per_sec",
    }
    assert expected <= tags, expected - tags
    assert [e.step for e in events.Scalars("train/reward")] == [0, 1]
    lengths = events.Scalars("train/completions/max_length")
    assert all(1 <= e.value <= 12 for e in lengths)
    assert 0 < events.Scalars("train/entropy")[0].value < 10  # nats over a 1.5k vocabulary


def test_several_mini_batches_and_epochs_take_that_many_steps(model_dir, prompts_dir, tmp_path, scripted_engine):
    module = GRPOModule(
        str(model_dir),
        engine=scripted_engine(),
        rollout=RolloutConfig(num_generations=4),
        update=UpdateConfig(ppo_epochs=2, mini_batches=3, micro_batch_size=2),
        loss=GRPOLossConfig(epsilon_low=0.01, epsilon_high=0.01),
        optimizer=OptimizerConfig(lr=1e-2),
    )
    run = trainer(tmp_path, max_steps=6)
    run.fit(module, datamodule=data(model_dir, prompts_dir))
    assert run.global_step == 6 and module.rollout_step == 1  # one rollout batch, 2 x 3 optimizer steps
    clipped = run.callback_metrics["train/clip_ratio/region_mean"]
    assert float(clipped) > 0  # after the first step the ratio leaves a 1% trust region


def test_kl_mask_and_lora_reference_paths(model_dir, prompts_dir, tmp_path, scripted_engine):
    module = GRPOModule(
        str(model_dir),
        engine=scripted_engine(),
        lora=LoraConfig(r=4),
        rollout=RolloutConfig(num_generations=2),
        loss=GRPOLossConfig(kl_coef=0.01, kl_mask_threshold=0.15),
        optimizer=OptimizerConfig(lr=1e-2),
    )
    run = trainer(tmp_path, max_steps=3)
    run.fit(module, datamodule=data(model_dir, prompts_dir))
    assert module.ref_model is None  # LoRA: the base model (adapters off) is the reference
    assert float(run.callback_metrics["train/kl"]) > 0
    saved = load_model(Path(run.log_dir) / "hf_model")
    assert not any("lora" in name for name, _ in saved.named_parameters())


def test_resume_continues_the_rollout_count_and_optimizer(model_dir, prompts_dir, tmp_path, scripted_engine):
    make = lambda: GRPOModule(str(model_dir), engine=scripted_engine(), rollout=RolloutConfig(num_generations=2))  # noqa: E731
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    first = trainer(tmp_path, max_steps=2, enable_checkpointing=True, callbacks=[checkpoint])
    module = make()
    first.fit(module, datamodule=data(model_dir, prompts_dir))
    exp_avg = {k: v["exp_avg"].clone() for k, v in first.optimizers[0].state_dict()["state"].items()}
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    old = dict(saved, state_dict=dict(saved["state_dict"]))  # as written before the reference left the module tree
    old["state_dict"] |= {"ref_model." + k[len("model.") :]: v for k, v in saved["state_dict"].items()}
    torch.save(old, tmp_path / "old.ckpt")
    resumed_module = make()
    resumed = trainer(tmp_path, max_steps=3)
    resumed.fit(resumed_module, datamodule=data(model_dir, prompts_dir), ckpt_path=str(tmp_path / "old.ckpt"))
    assert resumed_module.rollout_step == 3 and resumed.global_step == 3
    assert saved["state_dict"] and not any(key.startswith("ref_model") for key in saved["state_dict"])  # not stored
    reference = load_model(model_dir).state_dict()  # ... but reloaded from its path, unchanged by training
    assert all(torch.equal(v, reference[k]) for k, v in resumed_module.ref_model.state_dict().items())
    state = resumed.optimizers[0].state_dict()["state"]
    assert not torch.equal(state[0]["exp_avg"], exp_avg[0])  # restored, then stepped once more
    assert int(state[0]["step"]) == 3


def test_validation_and_test_report_greedy_accuracy(model_dir, prompts_dir, tmp_path):
    module = GRPOModule(
        str(model_dir), rollout=RolloutConfig(num_generations=2, sampling=SamplingConfig(max_new_tokens=8))
    )
    pool = PromptPoolDataModule(
        str(model_dir), train_path=str(prompts_dir), val_path=str(prompts_dir), test_path=str(prompts_dir), batch_size=4
    )
    run = trainer(tmp_path, max_steps=1, limit_val_batches=None, num_sanity_val_steps=-1, val_check_interval=1)
    run.fit(module, datamodule=pool)
    assert float(run.callback_metrics["val/accuracy"]) == 0.0  # a random model boxes nothing
    assert "val/accuracy_op_1" in run.callback_metrics and "val/completion_length" in run.callback_metrics
    events = EventAccumulator(str(next(Path(run.log_dir).glob("events*"))))
    events.Reload()
    assert [e.step for e in events.Scalars("val/accuracy")] == [0, 1]  # the sanity pass is the step-0 value
    (result,) = run.test(module, datamodule=pool)
    assert result["test/accuracy"] == 0.0 and 1 <= result["test/completion_length"] <= 8


def test_validation_with_samples_logs_mean_and_pass_at_k(model_dir, prompts_dir, tmp_path, scripted_engine):
    # The scripted engine answers right the first min(count, n) of n completions, counts 1, 0, 2, 1 by position in
    # each generate call. Validation batches of 4 and 2 prompts: k = 4 draws give right counts 1, 0, 2, 1 | 1, 0.
    #   mean@4 = pass@1 = (1 + 0 + 2 + 1 + 1 + 0) / 24 = 0.2083; pass@4 = share with a right draw = 4/6;
    #   greedy (n = 1): right where the count is >= 1, 4 of 6.
    module = GRPOModule(
        str(model_dir), engine=scripted_engine(right_counts=(1, 0, 2, 1)),
        rollout=RolloutConfig(num_generations=2, val_samples=4, val_temperature=0.8),
    )  # fmt: skip
    pool = PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), val_path=str(prompts_dir), batch_size=4)
    run = trainer(tmp_path, max_steps=1, limit_val_batches=None, num_sanity_val_steps=-1, val_check_interval=1)
    run.fit(module, datamodule=pool)
    events = EventAccumulator(str(next(Path(run.log_dir).glob("events*"))))
    events.Reload()
    values = {tag: [e.value for e in events.Scalars(tag)] for tag in ("val/accuracy", "val/mean@4", "val/pass@1",
                                                                      "val/pass@4")}  # fmt: skip
    assert values["val/mean@4"] == pytest.approx([5 / 24] * 2) and values["val/pass@1"] == pytest.approx([5 / 24] * 2)
    assert values["val/pass@4"] == pytest.approx([4 / 6] * 2) and values["val/accuracy"] == pytest.approx([4 / 6] * 2)
    assert module.rollout.val_sampled().temperature == 0.8
    bad = RolloutConfig(val_samples=0).config_errors("k") + RolloutConfig(
        val_samples=2, val_temperature=0
    ).config_errors("k")
    assert any("k.val_samples" in i for i in bad) and any("k.val_temperature" in i for i in bad)


def scalars(run) -> dict[str, list[float]]:
    events = EventAccumulator(str(next(Path(run.log_dir).glob("events*"))))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_dynamic_sampling_refills_every_step_to_p_informative_groups(model_dir, prompts_dir, tmp_path, scripted_engine):
    # P = 2 prompts, N = 2. The scripted engine answers right 0 of 2 for the first prompt of every generate call (all
    # rewards equal: uninformative) and 1 of 2 for the second. So each step's batch holds one informative group, one
    # refill round of 2 new prompts adds one more: rounds 1, prompts drawn 4, informative share 2/4, and the step
    # trains on 2 informative groups.
    module = GRPOModule(
        str(model_dir), engine=scripted_engine(right_counts=(0, 1)),
        rollout=RolloutConfig(num_generations=2, dynamic_sampling=True),
    )  # fmt: skip
    run = trainer(tmp_path, max_steps=3)
    run.fit(module, datamodule=PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=2))
    logged = scalars(run)
    assert logged["train/dynamic_sampling/informative_groups"] == [2.0] * 3  # every optimizer step: P informative
    assert logged["train/dynamic_sampling/rounds"] == [1.0] * 3
    assert logged["train/dynamic_sampling/prompts_drawn"] == [4.0] * 3
    assert logged["train/dynamic_sampling/informative_share"] == [0.5] * 3
    assert logged["train/frac_reward_zero_std"] == [0.0] * 3
    record = module.last_rollout
    assert record.rewards.shape == (2, 2) and (record.rewards.std(1) > 0).all()
    assert len(set(record.prompts)) == 2 and record.extras["refill"]["drawn_rollout_accuracy"].tolist() == [0, 0.5] * 2


def test_dynamic_sampling_stops_when_rounds_or_prompts_run_out(model_dir, prompts_dir, tmp_path, scripted_engine):
    # Nothing is ever right: with 6 prompts and P = 2, the step draws its 2, then 2 refill rounds of 2 exhaust the
    # pool (the bound of 4 rounds is not reached); it trains on 2 uninformative groups that carry no loss.
    module = GRPOModule(
        str(model_dir), engine=scripted_engine(right_counts=(0,)),
        rollout=RolloutConfig(num_generations=2, dynamic_sampling=True, max_refill_rounds=4),
    )  # fmt: skip
    run = trainer(tmp_path, max_steps=1)
    run.fit(module, datamodule=PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=2))
    logged = scalars(run)
    assert logged["train/dynamic_sampling/rounds"] == [2.0] and logged["train/dynamic_sampling/prompts_drawn"] == [6.0]
    assert logged["train/dynamic_sampling/informative_groups"] == [0.0] and logged["train/loss"] == [0.0]
    module = GRPOModule(
        str(model_dir), engine=scripted_engine(right_counts=(0,)),
        rollout=RolloutConfig(num_generations=2, dynamic_sampling=True, max_refill_rounds=1),
    )  # fmt: skip
    run = trainer(tmp_path / "bounded", max_steps=1)
    run.fit(module, datamodule=PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=2))
    assert scalars(run)["train/dynamic_sampling/rounds"] == [1.0]  # the bound


def test_dynamic_sampling_is_refused_with_too_few_prompts(model_dir, prompts_dir, tmp_path, scripted_engine):
    module = GRPOModule(
        str(model_dir), engine=scripted_engine(), rollout=RolloutConfig(num_generations=2, dynamic_sampling=True)
    )
    pool = PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=4)  # 6 prompts < 2 x 4
    with pytest.raises(ValueError, match=r"holds 6 prompts, fewer than 2 x data.batch_size = 8.*lower data.batch_size"):
        trainer(tmp_path, max_steps=1).fit(module, datamodule=pool)
    enough = data(model_dir, prompts_dir)  # 6 >= 2 x 3
    for datamodule in (pool, enough):
        datamodule.setup("fit")
    assert module.data_errors(pool) and not module.data_errors(enough)
    assert RolloutConfig(max_refill_rounds=0).config_errors("k") == ["k.max_refill_rounds=0: must be >= 1"]


def test_every_bad_setting_is_reported_at_once(tmp_path):
    with pytest.raises(ValueError) as err:
        GRPOModule(
            str(tmp_path / "missing"),
            rollout=RolloutConfig(num_generations=1, sampling=SamplingConfig(temperature=-1.0)),
            loss=GRPOLossConfig(epsilon_low=1.5, kl_coef=0.0, kl_mask_threshold=0.1),
            update=UpdateConfig(micro_batch_size=0),
            optimizer=OptimizerConfig(lr=0.0),
        )
    message = str(err.value)
    for key in (
        "model_path",
        "rollout.num_generations",
        "rollout.sampling.temperature",
        "loss.epsilon_low",
        "loss.kl_mask_threshold",
        "update.micro_batch_size",
        "optimizer.lr",
    ):
        assert f"model.init_args.{key}" in message, key


def test_ddp_and_fsdp1_are_refused_with_the_fix(model_dir, prompts_dir, tmp_path):
    from bridge_pl.modules.grpo import _check_strategy

    ddp = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    with pytest.raises(ValueError, match="configs/trainer/fsdp2.yaml"):
        _check_strategy(ddp)


def test_engines_are_swappable_through_the_same_interface(model_dir, scripted_engine):
    from bridge_pl.data.prompts import format_prompt

    tokenizer = load_tokenizer(model_dir)
    prompt = tokenizer(format_prompt(tokenizer, QUESTIONS[1]), add_special_tokens=False)["input_ids"]
    for engine in (HFEngine(batch_size=2), scripted_engine()):
        engine.bind(load_model(model_dir), tokenizer, str(model_dir))
        groups = engine.generate([prompt], 2, SamplingConfig(max_new_tokens=4), seed=0)
        assert len(groups) == 1 and len(groups[0]) == 2


def test_a_mid_epoch_resume_sees_the_prompts_of_an_uninterrupted_run(model_dir, tmp_path, scripted_engine):
    rows = [{"query": f"The number of each Bag's Pen equals {k}. How many?", "final_answer": k, "num_ops": 1}
            for k in range(8)]  # fmt: skip
    write_dataset(tmp_path / "pool", rows, config={"note": "resume test"})

    class Prompts(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.seen.append([p.split("equals ")[1][0] for p in pl_module.last_rollout.prompts])

    def fit(name, ckpt_path=None):
        seen = Prompts()
        every_step = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / name), every_n_train_steps=1,
                                                         save_top_k=-1)  # fmt: skip
        run = trainer(tmp_path / name, max_steps=5, enable_checkpointing=True, callbacks=[seen, every_step])
        module = GRPOModule(str(model_dir), engine=scripted_engine(), rollout=RolloutConfig(num_generations=2))
        pool = PromptPoolDataModule(str(model_dir), train_path=str(tmp_path / "pool"), batch_size=2)
        run.fit(module, datamodule=pool, ckpt_path=ckpt_path)
        return seen.seen

    uninterrupted = fit("full")  # 4 batches per epoch: steps 1-4 in epoch 0, step 5 in epoch 1
    resumed = fit("resumed", ckpt_path=str(tmp_path / "full" / "epoch=0-step=2.ckpt"))
    assert resumed == uninterrupted[2:]


@pytest.mark.parametrize(
    "loss",
    [
        GRPOLossConfig(kl_coef=0.05, epsilon_low=0.01, epsilon_high=0.01),
        GRPOLossConfig(
            kl_coef=0.05,
            epsilon_low=0.01,
            epsilon_high=0.01,
            entropy_coef=0.01,
            top_entropy_quantile=0.5,
            importance_sampling_level="sequence",
            dual_clip_c=3.0,
        ),  # fmt: skip
        GRPOLossConfig(
            kl_coef=0.05,
            epsilon_low=0.01,
            epsilon_high=0.01,
            sampling_correction="token_mask",
            sampling_ratio_min=0.5,
            sampling_ratio_max=2.0,
        ),  # fmt: skip
    ],
    ids=["default", "all-options", "mismatch-mask"],
)
def test_loss_metrics_do_not_depend_on_the_micro_batch_size(model_dir, prompts_dir, tmp_path, scripted_engine, loss):
    # 3 prompts x 4 rollouts = 12 rows; prompt 1 has no right answer (a zero-std group the filter drops), so rows
    # without loss sit among those with loss. Two epochs: the second step's ratios leave the 1% clip range.
    def metrics(micro_batch_size):
        module = GRPOModule(
            str(model_dir),
            engine=scripted_engine(right_counts=(1, 0, 2), logprobs=loss.sampling_correction != "none"),
            rollout=RolloutConfig(num_generations=4, filter_zero_std=True),
            loss=loss,
            update=UpdateConfig(ppo_epochs=2, micro_batch_size=micro_batch_size),
            optimizer=OptimizerConfig(lr=1e-2),
        )
        run = trainer(tmp_path / str(micro_batch_size), max_steps=2)
        run.fit(module, datamodule=data(model_dir, prompts_dir))
        return {k: float(v) for k, v in run.callback_metrics.items()}

    one, whole = metrics(1), metrics(12)
    keys = ["train/clip_ratio/low_mean", "train/clip_ratio/high_mean", "train/clip_ratio/region_mean", "train/kl",
            "train/policy_loss", "train/loss"] + (["train/entropy_bonus"] if loss.entropy_coef else [])  # fmt: skip
    if loss.sampling_correction != "none":
        keys += [f"train/sampling/importance_sampling_ratio/{s}" for s in ("min", "mean", "max")]
        keys += ["train/sampling/masked_share", "train/sampling/logp_difference", "train/sampling/logp_difference_max"]
        assert 0 < one["train/sampling/masked_share"] < 1  # the made-up engine log-probs leave some ratios outside
    for key in keys:  # 5e-5: step 2 runs on weights whose float32 gradient sums were added in another order
        assert one[key] == pytest.approx(whole[key], rel=5e-5, abs=5e-6), key
    assert one["train/clip_ratio/region_mean"] > 0 and one["train/kl"] > 0
