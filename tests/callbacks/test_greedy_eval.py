"""GreedyEvalCallback: argument checks, scoring, outputs, and that it only observes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from bridge_pl.cli import main as bridge_main
from bridge_pl.data.datamodules import SFTDataModule
from bridge_pl.data.prompt_sets import PromptSet, load_prompt_set
from bridge_pl.evaluation import evaluate_prompts
from bridge_pl.modules import OptimizerConfig, SFTModule
from bridge_pl.rollout import HFEngine, SamplingConfig
from callbacks.greedy_eval import GreedyEvalCallback, _shard

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def generate(out: Path, split: str, size: int) -> Path:
    assert bridge_main(["data", "generate", "--split", split, "--size", str(size), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("test") / "test_id", "test_id", 6)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("sft") / "sft", "sft", 8)


def fit(root: Path, model_dir: Path, sft_dir: Path, callbacks: list) -> SFTModule:
    L.seed_everything(0)
    module = SFTModule(str(model_dir), optimizer=OptimizerConfig(lr=3e-3), hf_output_dir=str(root / "hf"))
    data = SFTDataModule(str(sft_dir), str(model_dir), max_length=256, truncation="truncate", batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, logger=L.pytorch.loggers.TensorBoardLogger(str(root)), callbacks=callbacks,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(root),
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return module


def test_arguments_are_checked_up_front(tmp_path, prompts):
    with pytest.raises(FileNotFoundError, match="bridge data generate --split test_id"):
        GreedyEvalCallback(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="max_new_tokens=0.*batch_size=0"):
        GreedyEvalCallback(str(prompts), max_new_tokens=0, batch_size=0)


def test_scores_logs_and_writes_results_without_changing_training(tmp_path, model_dir, sft_dir, prompts, capsys):
    callback = GreedyEvalCallback(str(prompts), max_new_tokens=8, batch_size=4, limit=5)
    observed = fit(tmp_path / "with", model_dir, sft_dir, [callback])
    plain = fit(tmp_path / "without", model_dir, sft_dir, [])
    for (name, a), b in zip(observed.model.state_dict().items(), plain.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert observed.model.training  # back in train mode

    results = callback.results
    assert results["problems"] == 5 and 0 <= results["correct"] <= 5
    assert results["accuracy"] == results["correct"] / 5 and results["step"] == 2
    assert results["per_op"] == {"20": {"problems": 5, "accuracy": results["accuracy"]}}  # bridge eval's layout
    assert f"greedy accuracy on {prompts}: {100 * results['accuracy']:.1f}% ({results['correct']}/5)" in (
        capsys.readouterr().out
    )
    (written,) = (tmp_path / "with").rglob("greedy_eval.json")
    assert json.loads(written.read_text())["problems"] == 5


@pytest.mark.parametrize(("size", "world"), [(5, 2), (65, 2), (3, 4), (7, 3)])
def test_every_rank_gets_an_equal_share_and_together_all_prompts(size, world):
    prompts = PromptSet("p", [[i] for i in range(size)], [str(i) for i in range(size)], [1] * size)
    shares = [_shard(prompts, SimpleNamespace(global_rank=r, world_size=world)) for r in range(world)]
    assert len({len(s) for s in shares}) == 1  # the same number of generate calls on every rank (lockstep)
    assert {i for s in shares for i in s.index} == set(range(size))


def test_greedy_completions_stop_after_the_answer_tag(model_dir, prompts):
    module = SFTModule(str(model_dir))
    module.configure_model()
    engine = HFEngine(batch_size=4)  # what the callback decodes with
    engine.bind(module.model.eval(), module.tokenizer, str(model_dir))
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=12)
    both = load_prompt_set(str(prompts), module.tokenizer, limit=2)
    assert len(both.prompt_ids[0]) != len(both.prompt_ids[1])  # so the batched call left-pads one of them
    first = evaluate_prompts(engine, both, greedy, batch_size=2)
    alone = PromptSet(both.path, both.prompt_ids[:1], both.ground_truth[:1], both.num_ops[:1])
    again = evaluate_prompts(engine, alone, greedy, batch_size=1)
    assert len(first) == 2 and first[0]["completion"] == again[0]["completion"]  # the same alone or batched
    assert all("</answer>" not in r["completion"][: -len("</answer>")] for r in first)
