"""The GRPO analysis callbacks: what reaches TensorBoard and disk, and that training is the same without them."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bridge_pl.data.datamodules import PromptPoolDataModule
from bridge_pl.data.io import write_dataset
from bridge_pl.modules import OptimizerConfig
from bridge_pl.modules.grpo import GRPOLossConfig, GRPOModule, RolloutConfig
from bridge_pl.rollout import SamplingConfig
from callbacks.completions import CompletionsCallback
from callbacks.influence import InfluenceCallback
from callbacks.rollout_accuracy import RolloutAccuracyCallback

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

N = 4
RIGHT = (0, 1, 2, 3, 4, 2)  # right answers per prompt, cycling: alpha 0, .25, .5, .75, 1, .5


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory) -> Path:
    rows = [
        {"query": f"The number of each Bag's Pen equals {k}. How many Pen does each Bag have?", "final_answer": k,
         "num_ops": 1}
        for k in range(6)
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("prompts") / "pool"
    write_dataset(path, rows, config={"note": "test prompts"})
    return path


def fit(model_dir, prompts_dir, tmp_path, engine, callbacks, steps=2) -> tuple[GRPOModule, L.Trainer]:
    rollout = RolloutConfig(num_generations=N, sampling=SamplingConfig(max_new_tokens=32))
    module = GRPOModule(str(model_dir), engine=engine, rollout=rollout,
                        loss=GRPOLossConfig(kl_coef=0.0), optimizer=OptimizerConfig(lr=1e-3))  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, enable_checkpointing=False, callbacks=callbacks,
        logger=L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="run", default_hp_metric=False),
    )  # fmt: skip
    data = PromptPoolDataModule(str(model_dir), train_path=str(prompts_dir), batch_size=6, shuffle=False)
    trainer.fit(module, datamodule=data)
    return module, trainer


def test_callbacks_log_histograms_influence_and_completions(model_dir, prompts_dir, tmp_path, scripted_engine):
    accuracy = RolloutAccuracyCallback(every_n_steps=1, probe_path=str(prompts_dir), num_generations=N)
    influence = InfluenceCallback(str(prompts_dir), str(prompts_dir), num_generations=N, every_n_steps=2,
                                  parameters="lm_head", sketch_dim=4096)  # fmt: skip
    completions = CompletionsCallback(every_n_steps=1, num_prompts=2, num_completions=2)
    _, trainer = fit(model_dir, prompts_dir, tmp_path, scripted_engine(RIGHT), [accuracy, influence, completions])
    log_dir = Path(trainer.log_dir)
    events = EventAccumulator(str(next(log_dir.glob("events*"))), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("rollout_accuracy/probe/informative_mass", "rollout_accuracy/train/mean_sqrt_var",
                "rollout_accuracy/probe/frac_0", "rollout_accuracy/probe/frac_1", "influence/total",
                "influence/co_influence", "influence/k_plus", "influence/k_minus", "influence/influence_sum/(0.4,0.6]",
                "influence/target_grad_norm"):  # fmt: skip
        assert tag in scalars, tag
    probe = events.Scalars("rollout_accuracy/probe/informative_mass")
    assert probe[0].step == 0 and probe[0].value == pytest.approx(4 / 6)  # alphas 0, .25, .5, .75, 1, .5
    assert [e.step for e in events.Scalars("influence/total")] == [0, 2]
    by_bin = {tag: events.Scalars(f"influence/{tag}")[0].value for tag in (
        "alpha_bin_0", "alpha_bin_0_0.2", "alpha_bin_0.2_0.4", "alpha_bin_0.4_0.6", "alpha_bin_0.6_0.8",
        "alpha_bin_0.8_1", "alpha_bin_1")}  # fmt: skip
    assert by_bin["alpha_bin_0"] == by_bin["alpha_bin_1"] == by_bin["alpha_bin_0_0.2"] == 0  # none or no influence
    assert by_bin["alpha_bin_0.4_0.6"] == pytest.approx(events.Scalars("influence/influence_sum/(0.4,0.6]")[0].value)
    assert sum(by_bin.values()) == pytest.approx(6 * events.Scalars("influence/total")[0].value, rel=1e-5)
    assert [e.step for e in events.Scalars("timing/influence_s")] == [0, 2]
    assert [e.step for e in events.Scalars("rollout_accuracy/train/mean")] == [1, 2]
    assert {"rollout_accuracy/probe/figure", "rollout_accuracy/train/figure", "influence/figure",
            "influence/over_training"} <= set(events.Tags()["images"])  # fmt: skip
    assert {"rollout_accuracy/probe/alpha", "rollouts/reward", "rollouts/advantage", "rollouts/length"} <= set(
        events.Tags()["histograms"]
    )
    assert "completions/text/text_summary" in events.Tags()["tensors"]
    hist = json.loads((log_dir / "rollout_accuracy" / "probe_step_0.json").read_text())
    assert hist["counts"] == {
        "0": 1,
        "(0,0.2]": 0,
        "(0.2,0.4]": 1,
        "(0.4,0.6]": 2,
        "(0.6,0.8]": 1,
        "(0.8,1)": 0,
        "1": 1,
    }
    assert (log_dir / "rollout_accuracy" / "probe_step_0.png").stat().st_size > 1000
    measured = json.loads((log_dir / "influence" / "step_0.json").read_text())
    assert [p["alpha"] for p in measured["prompts"]] == [0.0, 0.25, 0.5, 0.75, 1.0, 0.5]
    assert measured["prompts"][0]["influence"] == 0 and measured["prompts"][2]["influence"] != 0
    history = json.loads((log_dir / "influence" / "history.json").read_text())
    assert [row["step"] for row in history] == [0, 2] and influence.state_dict()["history"] == history
    assert (log_dir / "influence" / "over_training.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (log_dir / "completions" / "step_1.jsonl").read_text().splitlines()]
    assert len(rows) == 6 * N and {"prompt", "completion", "reward", "advantage", "length"} <= rows[0].keys()
    assert sum(r["correct"] for r in rows) == sum(RIGHT)


def test_training_is_identical_without_the_callbacks(model_dir, prompts_dir, tmp_path, scripted_engine):
    accuracy = RolloutAccuracyCallback(every_n_steps=1, probe_path=str(prompts_dir), num_generations=N)
    influence = InfluenceCallback(num_generations=N, every_n_steps=1)  # the data module's prompts (no val_path)
    observed, _ = fit(model_dir, prompts_dir, tmp_path / "a", scripted_engine(RIGHT), [accuracy, influence,
                      CompletionsCallback(every_n_steps=1)])  # fmt: skip
    plain, _ = fit(model_dir, prompts_dir, tmp_path / "b", scripted_engine(RIGHT), [])
    for (name, a), (_, b) in zip(observed.model.state_dict().items(), plain.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [row["step"] for row in influence.history] == [0, 1, 2]


def test_bad_arguments_are_refused_with_their_names():
    with pytest.raises(ValueError, match="num_generations=1"):
        InfluenceCallback("a", "b", num_generations=1)
    with pytest.raises(ValueError, match="temperature=0"):
        RolloutAccuracyCallback(temperature=0)
    with pytest.raises(ValueError, match="every_n_steps=0"):
        CompletionsCallback(every_n_steps=0)


def test_callbacks_refuse_a_module_that_is_not_grpo(model_dir):
    from bridge_pl.modules import SFTModule

    with pytest.raises(TypeError, match="GRPOModule"):
        CompletionsCallback().setup(None, SFTModule(str(model_dir)), "fit")
