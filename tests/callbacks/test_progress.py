"""PlainProgressBar: the formatters on hand-worked values, and the lines a real tiny fit prints under a fake clock."""

from __future__ import annotations

import io

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, TensorDataset

from callbacks.progress import (
    PlainProgressBar,
    estimate_remaining,
    format_count,
    format_duration,
    format_final_line,
    format_progress_line,
    format_validation_line,
    select_train_metrics,
    select_val_metrics,
    wants_plain_progress,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

SECONDS_PER_STEP = 10.0  # the fake clock: 10 s of "wall time" per optimizer step


class TinyRegression(L.LightningModule):
    """A linear layer on random data that logs what the recipes log: train/loss, train/tokens_per_sec, val/*."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.losses: list[float] = []  # per training batch, to work out the printed values

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.losses.append(float(loss))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/tokens_per_sec", 1000.0 * (self.global_step + 1))  # 1k, 2k, ...: hand-checkable
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x), y), prog_bar=True)
        self.log("val/accuracy", 0.5)
        self.log("val/accuracy_op_2", 1.0)  # a breakdown: left off the line

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(batches: int = 10) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * batches, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def fit(bar: PlainProgressBar | None, **trainer_args) -> tuple[L.Trainer, TinyRegression]:
    L.seed_everything(0)
    module = TinyRegression()
    trainer = L.Trainer(
        accelerator="cpu", callbacks=[bar] if bar else [], logger=False, enable_checkpointing=False,
        enable_model_summary=False, **trainer_args,
    )  # fmt: skip
    if bar is not None:
        bar.clock = lambda: SECONDS_PER_STEP * trainer.global_step  # time moves only when training does
    trainer.fit(module, loader(), loader(2))
    return trainer, module


def printed(capsys) -> list[str]:
    out = capsys.readouterr().out
    assert "\r" not in out and out.isascii()
    return out.splitlines()


# ------------------------------------------------------------------------------------------------ formatters
def test_format_duration():
    assert format_duration(0) == "0s"
    assert format_duration(130) == "2m10s"
    assert format_duration(410) == "6m50s"
    assert format_duration(3600 + 2 * 60 + 5) == "1h02m"
    assert format_duration(float("nan")) == "?"


def test_format_count_and_metric_selection():
    assert format_count(5100) == "5.1k"
    assert format_count(2_340_000) == "2.34M"
    assert select_train_metrics({"train/reward": 0.25, "train/loss": 0.5}) == {"loss": "0.5", "reward": "0.25"}
    assert select_train_metrics({"train/lr": 1e-3}) == {}
    assert select_val_metrics({"val/loss": 1.0, "val/ppl": 2.718281, "eval/accuracy": 0.3}) == {
        "val/loss": "1",
        "val/ppl": "2.718",
    }


def test_remaining_is_the_mean_step_time_times_the_steps_left():
    assert estimate_remaining(steps_done=4, steps_left=6, elapsed_s=40.0) == 60.0  # 10 s a step, 6 to go
    assert estimate_remaining(0, 6, 40.0) is None


def test_line_formats():
    line = format_progress_line(120, 500, {"loss": "1.234", "tokens/s": "5.1k"}, elapsed_s=130, remaining_s=410)
    assert line == "step 120/500 | loss 1.234 | tokens/s 5.1k | elapsed 2m10s | remaining ~6m50s"
    assert format_progress_line(3, None, {"reward": "0.5"}, 61) == "step 3 | reward 0.5 | elapsed 1m01s"
    assert format_validation_line(5, None, {"val/accuracy": "0.5"}) == "val step 5 | val/accuracy 0.5"
    assert format_final_line(10, 10, {}, 100.0, 10) == "train done | step 10/10 | elapsed 1m40s | 10s/step"


# ------------------------------------------------------------------------------------------------ arguments
def test_arguments_are_checked_up_front():
    with pytest.raises(ValueError, match="interval_s=-1: must be >= 0; every_n_steps=-2"):
        PlainProgressBar(interval_s=-1, every_n_steps=-2)


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_wants_plain_progress_follows_the_terminal_and_the_env(monkeypatch):
    monkeypatch.delenv("BRIDGE_PROGRESS", raising=False)
    assert wants_plain_progress(FakeStream(tty=False)) is True
    assert wants_plain_progress(FakeStream(tty=True)) is False
    assert wants_plain_progress(object()) is True  # no isatty at all: nothing draws a bar there
    monkeypatch.setenv("BRIDGE_PROGRESS", "plain")
    assert wants_plain_progress(FakeStream(tty=True)) is True
    monkeypatch.setenv("BRIDGE_PROGRESS", "bar")
    assert wants_plain_progress(FakeStream(tty=False)) is False
    monkeypatch.setenv("BRIDGE_PROGRESS", "auto")
    assert wants_plain_progress(FakeStream(tty=True)) is False
    monkeypatch.setenv("BRIDGE_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="BRIDGE_PROGRESS='fancy': use plain"):
        wants_plain_progress()


# ------------------------------------------------------------------------------------------------ a real fit
def test_a_fit_prints_first_last_interval_and_validation_lines(capsys):
    bar = PlainProgressBar(interval_s=25.0)  # the fake clock: 10 s a step, so a line every 3rd step after the first
    trainer, module = fit(bar, max_steps=10, val_check_interval=5, limit_val_batches=1)
    assert trainer.progress_bar_callback is bar
    assert not any(isinstance(c, TQDMProgressBar) for c in trainer.callbacks)

    def step(k: int, remaining: str) -> str:
        loss = f"{module.losses[k - 1]:.4g}"
        return f"step {k}/10 | loss {loss} | tokens/s {k}k | elapsed {format_duration(10 * k)} | remaining ~{remaining}"

    lines = printed(capsys)
    assert lines == bar.lines
    assert [line for line in lines if line.startswith("step ")] == [
        step(1, "1m30s"),  # the first step: 10 s a step, 9 to go
        step(4, "1m00s"),  # 40 s since start, 30 since the last line
        step(7, "30s"),
        step(10, "0s"),  # the last step
    ]
    val = [line for line in lines if line.startswith("val ")]  # at steps 5 and 10; the sanity check prints none
    assert [line.split(" | ")[0] for line in val] == ["val step 5/10", "val step 10/10"]
    assert all(" | val/loss " in line and line.endswith(" | val/accuracy 0.5") for line in val)
    last_loss = f"{module.losses[-1]:.4g}"
    assert lines[-1] == f"train done | step 10/10 | loss {last_loss} | tokens/s 10k | elapsed 1m40s | 10s/step"


def test_every_n_steps_without_an_interval(capsys):
    bar = PlainProgressBar(interval_s=0, every_n_steps=3)
    fit(bar, max_steps=10, limit_val_batches=0)
    steps = [line.split(" | ")[0] for line in printed(capsys) if line.startswith("step ")]
    assert steps == ["step 1/10", "step 3/10", "step 6/10", "step 9/10", "step 10/10"]


def test_epoch_based_fit_uses_the_estimated_steps_and_counts_optimizer_steps(capsys):
    bar = PlainProgressBar(interval_s=1e9)  # only the first and the last step
    trainer, _ = fit(bar, max_epochs=2, accumulate_grad_batches=2, limit_val_batches=0)
    assert trainer.max_steps == -1 and trainer.global_step == 10  # 2 epochs of 10 batches, 2 batches a step
    lines = printed(capsys)
    assert [line.split(" | ")[0] for line in lines] == ["step 1/10", "step 10/10", "train done"]
    assert lines[0].endswith("| elapsed 10s | remaining ~1m30s")


def test_a_disabled_bar_prints_nothing(capsys):
    bar = PlainProgressBar()
    bar.disable()  # what setup does on every rank but zero
    fit(bar, max_steps=3, limit_val_batches=0)
    assert printed(capsys) == [] and bar.lines == []


def test_it_only_observes():
    _, observed = fit(PlainProgressBar(every_n_steps=1), max_steps=5, limit_val_batches=0, enable_progress_bar=True)
    _, alone = fit(None, max_steps=5, limit_val_batches=0, enable_progress_bar=False)
    assert observed.losses == alone.losses
    assert torch.equal(observed.layer.weight, alone.layer.weight)
