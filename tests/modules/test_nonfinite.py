"""A non-finite loss never reaches optimizer.step(): the run stops (or skips a bounded number) and exports nothing."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from bridge_pl.modules import SFTModule
from tests.modules.test_sft import fast_module, make_data, make_trainer, sft_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore:`is_gradient_checkpointing`:FutureWarning"
)


class PoisonedSFT(SFTModule):
    """Returns a NaN loss at the listed optimizer steps (0-based global_step) and remembers the weights before."""

    bad_steps: tuple[int, ...] = ()

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.trainer.global_step in self.bad_steps:
            self.before_bad = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            loss = loss * float("nan")
        return loss


def poisoned(model_dir, bad_steps, **kwargs) -> PoisonedSFT:
    module = fast_module(model_dir, **kwargs)
    module.__class__ = PoisonedSFT
    module.bad_steps = bad_steps
    return module


def test_sft_stops_at_the_first_nonfinite_loss_and_exports_nothing(tmp_path, model_dir, sft_dir):  # noqa: F811
    L.seed_everything(0)
    out = tmp_path / "hf"
    module = poisoned(model_dir, (2,), hf_output_dir=str(out))
    with pytest.raises(FloatingPointError, match=r"non-finite loss = nan.* at optimizer step 3 .*learning rate"):
        make_trainer(tmp_path, max_steps=5).fit(module, datamodule=make_data(model_dir, sft_dir))
    assert not (out / "config.json").exists() and not list(out.glob("*.safetensors"))
    after = module.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in module.before_bad.items())  # the bad step moved nothing


def test_sft_skips_a_bounded_number_of_nonfinite_steps(tmp_path, model_dir, sft_dir):  # noqa: F811
    L.seed_everything(0)
    module = poisoned(model_dir, (2,), max_nonfinite_skips=1, hf_output_dir=str(tmp_path / "hf"))
    trainer = make_trainer(tmp_path, max_steps=4)
    trainer.fit(module, datamodule=make_data(model_dir, sft_dir))
    assert module.nonfinite_skipped == 1
    assert float(trainer.callback_metrics["train/nonfinite_skipped"]) == 1.0
    assert (tmp_path / "hf" / "config.json").exists()
    # past the bound: the second bad step stops the run
    module = poisoned(model_dir, (1, 2), max_nonfinite_skips=1, hf_output_dir=str(tmp_path / "hf2"))
    with pytest.raises(FloatingPointError, match="1 non-finite steps skipped"):
        make_trainer(tmp_path, max_steps=5).fit(module, datamodule=make_data(model_dir, sft_dir))
    assert not (tmp_path / "hf2" / "config.json").exists()


def test_save_hf_refuses_nonfinite_weights(tmp_path, model_dir):
    module = fast_module(model_dir)
    module.configure_model()
    with torch.no_grad():
        next(module.model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        module.save_hf(tmp_path / "hf")
    assert not (tmp_path / "hf" / "config.json").exists()


def test_negative_max_nonfinite_skips_is_refused(model_dir):
    with pytest.raises(ValueError, match="max_nonfinite_skips=-1"):
        SFTModule(str(model_dir), max_nonfinite_skips=-1)


# ------------------------------------------------------------------------------------------------------- GRPO
from bridge_pl.modules import GRPOModule, RolloutConfig  # noqa: E402
from tests.modules.test_grpo import data as grpo_data  # noqa: E402
from tests.modules.test_grpo import prompts_dir  # noqa: E402, F401 (fixture)
from tests.modules.test_grpo import trainer as grpo_trainer  # noqa: E402


class PoisonedGRPO(GRPOModule):
    """A NaN loss in the rollout batches listed (0-based rollout_step); remembers the weights before."""

    bad_steps: tuple[int, ...] = ()

    def _micro_batch_loss(self, seqs, micro, counts):
        loss, stats = super()._micro_batch_loss(seqs, micro, counts)
        if self.rollout_step in self.bad_steps:
            self.before_bad = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            loss = loss * float("nan")
        return loss, stats


def grpo_poisoned(model_dir, engine, bad_steps, **kwargs) -> PoisonedGRPO:
    module = PoisonedGRPO(str(model_dir), engine=engine(), rollout=RolloutConfig(num_generations=2), **kwargs)
    module.bad_steps = bad_steps
    return module


def test_grpo_stops_at_the_first_nonfinite_gradient(model_dir, prompts_dir, tmp_path, scripted_engine):  # noqa: F811
    out = tmp_path / "hf"
    module = grpo_poisoned(model_dir, scripted_engine, (1,), hf_output_dir=str(out))
    with pytest.raises(FloatingPointError, match=r"non-finite .*grad norm = nan at optimizer step 2 .*learning rate"):
        grpo_trainer(tmp_path, max_steps=3).fit(module, datamodule=grpo_data(model_dir, prompts_dir))
    assert not (out / "config.json").exists() and not list(out.glob("*.safetensors"))
    after = module.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in module.before_bad.items())


def test_grpo_skips_a_bounded_number_of_nonfinite_steps(model_dir, prompts_dir, tmp_path, scripted_engine):  # noqa: F811
    module = grpo_poisoned(model_dir, scripted_engine, (1,), max_nonfinite_skips=1, hf_output_dir=str(tmp_path / "a"))
    run = grpo_trainer(tmp_path, max_steps=3)
    run.fit(module, datamodule=grpo_data(model_dir, prompts_dir))
    assert module.nonfinite_skipped == 1 and run.global_step == 3 and module.rollout_step == 4
    assert float(run.callback_metrics["train/nonfinite_skipped"]) == 1.0
    module = grpo_poisoned(model_dir, scripted_engine, (0, 1), max_nonfinite_skips=1, hf_output_dir=str(tmp_path / "b"))
    with pytest.raises(FloatingPointError, match="1 non-finite steps skipped"):
        grpo_trainer(tmp_path, max_steps=3).fit(module, datamodule=grpo_data(model_dir, prompts_dir))
    assert not (tmp_path / "b" / "config.json").exists()
    with pytest.raises(ValueError, match="max_nonfinite_skips=-1"):
        GRPOModule(str(model_dir), max_nonfinite_skips=-1)
