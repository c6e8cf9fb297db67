"""Reward plug-ins in GRPO on the tiny model: weighted sums and their metrics, the accuracy reward, errors that
name the failing reward, resume with reward objects, and the YAML route through the real CLI."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bridge_pl.cli import main as bridge_main
from bridge_pl.data.datamodules import PromptPoolDataModule
from bridge_pl.data.io import write_dataset
from bridge_pl.modules.grpo import GRPOLossConfig, GRPOModule, RolloutConfig
from bridge_pl.task.rewards import BoxedMatch, FormatBonus, NumericMatch, Reward, RewardError
from bridge_pl.train_cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUESTIONS = [f"The number of each {bag}'s Pen equals 7. How many Pen does each {bag} have?" for bag in ("Bag", "Box")]


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "pool"
    write_dataset(path, [{"query": q, "final_answer": 7, "num_ops": 3} for q in QUESTIONS], config={"note": "test"})
    return path


@pytest.fixture()
def mixed_engine(scripted_engine):
    """Groups of 4: right, wrong, right, wrong-and-ill-formed (strict match 1 0 1 0, format 1 1 1 0)."""

    class Mixed(scripted_engine):
        def _generate(self, prompt_ids, n, sampling, seed):
            groups = super()._generate(prompt_ids, n, sampling, seed)
            for group in groups:
                group[-1] = self._completion(group[-1].text.removesuffix("</answer>"))
            return groups

    return Mixed


class Exploding(Reward):
    def __call__(self, completions, ground_truth, **columns):
        raise ZeroDivisionError("the reward divided by zero")


class ShortCount(Reward):
    def __call__(self, completions, ground_truth, **columns):
        return [0.0] * (len(completions) - 1)


class ColumnSpy(Reward):
    """Records the columns it was given; scores each completion by its num_ops."""

    seen: dict = {}

    def __call__(self, completions, ground_truth, **columns):
        ColumnSpy.seen = dict(columns, ground_truth=ground_truth)
        return [float(n) for n in columns["num_ops"]]


def trainer(tmp_path, max_steps=2, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", devices=1, max_steps=max_steps, log_every_n_steps=1, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(tmp_path),
        logger=L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="grpo", default_hp_metric=False),
        enable_checkpointing=False,
    )  # fmt: skip
    return L.Trainer(**(defaults | kwargs))


def module(model_dir, engine, rewards, **kwargs) -> GRPOModule:
    return GRPOModule(
        str(model_dir), engine=engine, rewards=rewards, rollout=RolloutConfig(num_generations=4),
        loss=GRPOLossConfig(kl_coef=0.0), **kwargs,
    )  # fmt: skip


def pool(model_dir, prompts_dir) -> PromptPoolDataModule:
    return PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=2)


def scalars(log_dir: str | Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(next(Path(log_dir).glob("events*"))))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_two_weighted_rewards_are_summed_and_each_is_logged(model_dir, prompts_dir, tmp_path, mixed_engine):
    grpo = module(model_dir, mixed_engine(), [BoxedMatch(weight=1.0), FormatBonus(weight=0.2), ColumnSpy(weight=0.0)])
    run = trainer(tmp_path)
    run.fit(grpo, datamodule=pool(model_dir, prompts_dir))
    logged = scalars(run.log_dir)
    # per group: strict match 1 0 1 0 (mean 0.5), format 1 1 1 0 (0.75), num_ops 3 (weight 0: logged only)
    assert logged["train/rewards/strict_match"] == [0.5, 0.5]
    assert logged["train/rewards/format"] == [0.75, 0.75]
    assert logged["train/rewards/column_spy"] == [3.0, 3.0]
    assert logged["train/reward"] == pytest.approx([0.5 + 0.2 * 0.75] * 2)  # 0.65: the weighted sum
    assert logged["train/rollout_accuracy"] == [0.5, 0.5]  # the first reward decides what is correct
    assert float(run.callback_metrics["train/reward"]) == pytest.approx(0.65)
    record = grpo.last_rollout
    values = record.reward_values
    assert set(values) == {"strict_match", "format", "column_spy"} and values["format"].shape == (2, 4)
    assert values["strict_match"].tolist() == [[1.0, 0.0, 1.0, 0.0]] * 2
    assert values["format"].tolist() == [[1.0, 1.0, 1.0, 0.0]] * 2
    assert torch.allclose(record.rewards, values["strict_match"] + 0.2 * values["format"])
    assert record.correct.tolist() == [[True, False, True, False]] * 2
    seen = ColumnSpy.seen  # 2 prompts x 4 completions, each with its prompt's columns
    assert seen["num_ops"] == [3] * 8 and seen["ground_truth"] == ["7"] * 8 and len(seen["prompts"]) == 8
    assert seen["prompts"][:4] == [seen["prompts"][0]] * 4 and sorted(set(seen["index"])) == [0, 1]
    assert seen["max_new_tokens"] == [1024] * 8 and all(n > 10 for n in seen["completion_tokens"])
    assert seen["completion_tokens"][3] < seen["completion_tokens"][2]  # the ill-formed one lost its closing tag
    assert "input_ids" not in seen and "attention_mask" not in seen


def test_the_accuracy_reward_decides_what_is_correct(model_dir, prompts_dir, tmp_path, mixed_engine):
    rewards = [FormatBonus(weight=0.2), BoxedMatch(weight=1.0)]
    assert module(model_dir, mixed_engine(), rewards).accuracy_reward == "format"  # default: the first
    grpo = module(model_dir, mixed_engine(), rewards, accuracy_reward="strict_match")
    run = trainer(tmp_path, max_steps=1)
    run.fit(grpo, datamodule=pool(model_dir, prompts_dir))
    assert float(run.callback_metrics["train/rollout_accuracy"]) == 0.5
    assert grpo.last_rollout.correct.tolist() == [[True, False, True, False]] * 2


def test_the_default_rewards_keep_the_old_names_and_numbers(model_dir, prompts_dir, tmp_path, mixed_engine):
    grpo = GRPOModule(str(model_dir), engine=mixed_engine(), loss=GRPOLossConfig(kl_coef=0.0),
                      rollout=RolloutConfig(num_generations=4, format_reward_scale=0.05))  # fmt: skip
    assert [(type(r), r.weight, r.name) for r in grpo.rewards] == [
        (BoxedMatch, 1.0, "strict_match"),
        (FormatBonus, 0.05, "format"),
    ]
    run = trainer(tmp_path, max_steps=1)
    run.fit(grpo, datamodule=pool(model_dir, prompts_dir))
    old = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 2) + torch.tensor([[0.05 * f for f in (1, 1, 1, 0)]] * 2)
    assert torch.equal(grpo.last_rollout.rewards, old)  # bit for bit what the hard-coded reward gave
    assert float(run.callback_metrics["train/rewards/format"]) == 0.75
    assert [r.name for r in GRPOModule(str(model_dir)).rewards] == ["strict_match"]  # no bonus by default


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Exploding(), r"model\.init_args\.rewards\[1\] \(Exploding\): ZeroDivisionError: the reward divided by zero"),
        (ShortCount(), r"model\.init_args\.rewards\[1\] \(ShortCount\) returned 7 values for 8 completions"),
    ],
)
def test_a_failing_reward_stops_the_step_with_its_name(model_dir, prompts_dir, tmp_path, scripted_engine, bad, message):
    grpo = module(model_dir, scripted_engine(), [BoxedMatch(), bad])
    with pytest.raises(RewardError, match=message):
        trainer(tmp_path, max_steps=1).fit(grpo, datamodule=pool(model_dir, prompts_dir))


def test_bad_reward_lists_are_reported_at_once_by_key(model_dir):
    with pytest.raises(ValueError) as err:
        GRPOModule(
            str(model_dir),
            rewards=[BoxedMatch(), NumericMatch(name="strict_match"), FormatBonus(), FormatBonus(weight=0.1)],
            rollout=RolloutConfig(format_reward_scale=0.05),
            accuracy_reward="accuracy",
        )
    message = str(err.value)
    assert "distinct ('format': rewards[2], rewards[3]; 'strict_match': rewards[0], rewards[1])" in message
    assert (
        "model.init_args.rollout.format_reward_scale=0.05 does nothing when model.init_args.rewards is set" in message
    )
    assert "accuracy_reward='accuracy': no reward has that name; choose one of strict_match, format" in message
    with pytest.raises(ValueError, match=r"model\.init_args\.rewards=\[\]: give at least one reward"):
        GRPOModule(str(model_dir), rewards=[])
    with pytest.raises(
        ValueError, match=r"model\.init_args\.rewards\[0\]: .* is not a bridge_pl\.task\.rewards\.Reward"
    ):
        GRPOModule(str(model_dir), rewards=[lambda completions, ground_truth, **columns: [0.0] * len(completions)])
    with pytest.raises(ValueError, match=r"accuracy_reward='format': no reward has that name; choose one of"):
        GRPOModule(str(model_dir), accuracy_reward="format")  # the default has no format bonus


def test_a_run_with_reward_objects_resumes_from_its_checkpoint(model_dir, prompts_dir, tmp_path, scripted_engine):
    make = lambda: module(model_dir, scripted_engine(), [BoxedMatch(), ColumnSpy(weight=0.5, name="ops")])  # noqa: E731
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    trainer(tmp_path / "first", max_steps=1, enable_checkpointing=True, callbacks=[checkpoint]).fit(
        make(), datamodule=pool(model_dir, prompts_dir)
    )
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)  # the rewards unpickle safely
    assert [r.name for r in saved["hyper_parameters"]["rewards"]] == ["strict_match", "ops"]
    resumed = make()
    run = trainer(tmp_path / "second", max_steps=2)
    run.fit(resumed, datamodule=pool(model_dir, prompts_dir), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.rollout_step == 2 and float(run.callback_metrics["train/rewards/ops"]) == 3.0


# ---------------------------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def tiny_prompts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "tiny_rl_train"
    assert bridge_main(["data", "generate", "--split", "tiny_rl_train", "--size", "4", "--out", str(out)]) == 0
    return out


def cli_argv(model_dir: Path, prompts: Path, tmp_path: Path, rewards: list[dict]) -> list[str]:
    extra = tmp_path / "rewards.yaml"
    extra.write_text(yaml.safe_dump({"model": {"init_args": {"rewards": rewards}}}))
    return [
        "fit", "--config", str(CONFIGS / "grpo" / "tiny.yaml"), "--config", str(extra),
        "--model.init_args.model_path", str(model_dir),
        "--model.init_args.hf_output_dir", str(tmp_path / "policy"),
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.sampling.max_new_tokens", "8",
        "--data.init_args.train_path", str(prompts),
        "--data.init_args.val_path", "null",
        "--data.init_args.batch_size", "2",
        "--trainer.max_steps", "2",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    ]  # fmt: skip


def test_yaml_rewards_run_through_the_cli(model_dir, tiny_prompts, tmp_path):
    rewards = [
        {"class_path": "bridge_pl.task.rewards.BoxedMatch", "init_args": {"weight": 1.0}},
        {"class_path": "bridge_pl.task.rewards.OverlongPunishment", "init_args": {"cache_length": 8, "weight": 0.5}},
    ]
    assert main(cli_argv(model_dir, tiny_prompts, tmp_path, rewards)) == 0
    run_dir = next((tmp_path / "runs").glob("*/version_0"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["init_args"]
    assert [r["class_path"].rsplit(".", 1)[1] for r in saved["rewards"]] == ["BoxedMatch", "OverlongPunishment"]
    logged = scalars(run_dir)
    # L_cache = L_max = 8: a completion of L tokens scores -L/8, so the mean is below 0 for any non-empty one
    overlong, strict = logged["train/rewards/overlong_punishment"], logged["train/rewards/strict_match"]
    assert len(overlong) == 2 and all(-1.0 <= v < 0 for v in overlong)
    assert logged["train/reward"] == pytest.approx([s + 0.5 * o for s, o in zip(strict, overlong, strict=True)])
    mean_length = logged["train/completions/mean_length"]
    assert overlong == pytest.approx([-n / 8 for n in mean_length])


def test_a_reward_class_path_that_does_not_import_is_named(model_dir, tiny_prompts, tmp_path, capsys):
    rewards = [
        {"class_path": "bridge_pl.task.rewards.BoxedMatch"},
        {"class_path": "bridge_pl.task.rewards.NoSuchReward", "init_args": {"weight": 0.1}},
    ]
    assert main(cli_argv(model_dir, tiny_prompts, tmp_path, rewards)) == 2
    err = capsys.readouterr().err
    assert 'Parser key "rewards"' in err and "bridge_pl.task.rewards.NoSuchReward" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_a_bad_reward_argument_is_refused_before_training(model_dir, tiny_prompts, tmp_path, capsys):
    rewards = [{"class_path": "bridge_pl.task.rewards.OverlongPunishment", "init_args": {"cache_length": 0}}]
    assert main(cli_argv(model_dir, tiny_prompts, tmp_path, rewards)) == 2
    assert "bridge: error: OverlongPunishment.cache_length=0: must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("task, reward", [("dyval-arithmetic", "numeric_match"), ("dyval-logic", "boolean_match")])
def test_grpo_takes_the_task_and_its_default_reward_from_the_data(model_dir, tmp_path, capsys, task, reward):
    prompts = tmp_path / "prompts"
    argv = ["data", "generate", "--task", task, "--split", "tiny_rl_train", "--size", "4", "--out", str(prompts)]
    assert bridge_main(argv) == 0
    config = tmp_path / "no_rewards.yaml"
    config.write_text("{}\n")
    fit = cli_argv(model_dir, prompts, tmp_path, [])
    fit[fit.index(str(tmp_path / "rewards.yaml"))] = str(config)  # no rewards: the task's own
    validate = ["--data.init_args.val_path", str(prompts), "--trainer.val_check_interval", "1"]
    assert main([*fit, *validate, "--data.init_args.limit_val", "2"]) == 0
    logged = scalars(next((tmp_path / "runs").glob("*/version_0")))
    assert f"train/rewards/{reward}" in logged and "train/rewards/strict_match" not in logged
    assert logged["train/reward"] == logged[f"train/rewards/{reward}"]
    assert "val/accuracy" in logged  # validation judged by the task (DyVal's judge)
    capsys.readouterr()
    elsewhere = ["--trainer.logger.init_args.save_dir", str(tmp_path / "x"), "--model.init_args.hf_output_dir", "y"]
    assert main([*fit, "--model.init_args.task", "igsm", *elsewhere]) == 2
    assert f"the data module's files are {task} data" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before the run wrote anything
