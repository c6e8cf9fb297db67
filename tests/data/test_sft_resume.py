"""Mid-epoch resume of the SFT training loader: the batches after a resume are those of the uninterrupted run.

The loader alone (state_dict / load_state_dict, with and without worker processes, and the iGSM fixed sets),
then a real Lightning fit of a tiny model resumed from step checkpoints, batch by batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from bridge_pl.data.datamodules import IGSMDataModule, SFTDataModule
from bridge_pl.data.io import write_dataset
from bridge_pl.data.loaders import BatchPlanSampler, ResumableLoader
from bridge_pl.data.records import AnswerStyle, generate_rows
from bridge_pl.modules import OptimizerConfig, SFTModule
from bridge_pl.task.generator import GeneratorConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROWS = 30  # 8 batches of 4 per epoch (the last one of 2)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    """Short plain answers of varied lengths (op 2-8): fast steps, batches that differ from one another."""
    out = tmp_path_factory.mktemp("data") / "sft"
    write_dataset(out, generate_rows(GeneratorConfig(min_op=2, max_op=8), 7, ROWS, AnswerStyle("plain")), config={})
    return out


def sft_data(model_dir: Path, sft_dir: Path, **kwargs) -> SFTDataModule:
    data = SFTDataModule(train_path=str(sft_dir), tokenizer_path=str(model_dir), batch_size=4, **kwargs)
    data.setup("fit")
    return data


def tokens(batches) -> list[list[list[int]]]:
    """The token ids of each batch, to compare batches exactly."""
    return [batch["input_ids"].tolist() for batch in batches]


def interrupted(loader: ResumableLoader, k: int) -> tuple[list, dict]:
    """The first k batches of an epoch and the loader state after them (the epoch left unfinished)."""
    iterator = iter(loader)
    first = [next(iterator) for _ in range(k)]
    return first, loader.state_dict()


# ------------------------------------------------------------------------------------------------ the loader
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_restored_loader_goes_on_with_the_remaining_batches(model_dir, sft_dir, num_workers):
    data = sft_data(model_dir, sft_dir, num_workers=num_workers)
    loader = data.train_dataloader()
    assert isinstance(loader, ResumableLoader) and isinstance(loader.sampler, BatchPlanSampler)
    epoch0 = tokens(loader)
    loader.sampler.set_epoch(1)
    epoch1 = tokens(loader)
    assert len(epoch0) == len(loader) == 8 and epoch0 != epoch1

    first, state = interrupted(data.train_dataloader(), 3)
    # Workers have fetched ahead by now; the state counts what the training loop was handed.
    assert state == {"epoch": 0, "batches": 3} and tokens(first) == epoch0[:3]

    fresh = sft_data(model_dir, sft_dir, num_workers=num_workers).train_dataloader()
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state  # a checkpoint saved before the resumed epoch iterates keeps the place
    rest = tokens(fresh)
    assert rest == epoch0[3:]
    assert fresh.state_dict() == {"epoch": 0, "batches": 8} and len(fresh) == 8  # the whole epoch's length
    fresh.sampler.set_epoch(1)
    assert tokens(fresh) == epoch1  # the next epoch is whole, and the usual one


def test_a_state_of_another_epoch_is_not_applied(model_dir, sft_dir):
    data = sft_data(model_dir, sft_dir)
    loader = data.train_dataloader()
    loader.sampler.set_epoch(1)
    epoch1 = tokens(loader)
    fresh = data.train_dataloader()
    fresh.load_state_dict({"epoch": 0, "batches": 8})  # saved at the end of epoch 0: epoch 1 starts afresh
    fresh.sampler.set_epoch(1)
    assert tokens(fresh) == epoch1


def test_a_state_saved_before_the_first_batch_of_an_epoch_counts_none_of_it(model_dir, sft_dir):
    loader = sft_data(model_dir, sft_dir).train_dataloader()
    assert len(tokens(loader)) == 8  # epoch 0 done
    loader.sampler.set_epoch(1)
    iter(loader)  # epoch 1 begun, no batch out yet (a checkpoint from on_train_epoch_start)
    assert loader.state_dict() == {"epoch": 1, "batches": 0}


def test_ranks_resume_their_own_shares(model_dir, sft_dir):
    from types import SimpleNamespace

    for rank in (0, 1):
        data = sft_data(model_dir, sft_dir)
        data.trainer = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 2, "rank": rank}, current_epoch=0)
        whole = tokens(data.train_dataloader())
        first, state = interrupted(data.train_dataloader(), 2)
        fresh = data.train_dataloader()
        fresh.load_state_dict(state)
        assert tokens(first) + tokens(fresh) == whole and len(whole) == 4


def test_prompt_style_loaders_skip_whole_batches_of_indices():
    from bridge_pl.data.loaders import EpochSampler

    examples = list(range(10))

    def loader() -> ResumableLoader:
        return ResumableLoader(examples, batch_size=3, sampler=EpochSampler(examples, num_replicas=1, rank=0, seed=1))

    whole = [batch.tolist() for batch in loader()]
    first, state = interrupted(loader(), 2)
    fresh = loader()
    fresh.load_state_dict(state)
    assert [b.tolist() for b in first] + [b.tolist() for b in fresh] == whole and len(whole) == 4


def test_loader_refuses_a_sampler_that_cannot_skip():
    with pytest.raises(TypeError, match="needs a sampler with `epoch` and `start`"):
        ResumableLoader(list(range(4)), batch_size=2)


def test_igsm_fixed_sets_resume_too(model_dir, sft_dir):
    def igsm(**kwargs) -> IGSMDataModule:
        data = IGSMDataModule(str(model_dir), style="plain", batch_size=4, val_size=0, **kwargs)
        data.setup("fit")
        return data

    for kwargs in ({"train_size": 10, "generator": {"min_op": 2, "max_op": 4}}, {"path": str(sft_dir)}):
        whole = tokens(igsm(**kwargs).train_dataloader())
        first, state = interrupted(igsm(**kwargs).train_dataloader(), 2)
        fresh = igsm(**kwargs).train_dataloader()
        fresh.load_state_dict(state)
        assert tokens(first) + tokens(fresh) == whole and len(whole) > 2


# ------------------------------------------------------------------------------------------------ Lightning
class _Batches(Callback):
    """Records the token sum of every training batch, per global step."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(int(batch["input_ids"].sum()))


def fit(model_dir: Path, sft_dir: Path, root: Path, ckpt_path: Path | None = None) -> list[int]:
    """11 steps (epoch 0: steps 1-8, epoch 1: steps 9-11), a checkpoint every 2 steps; the batches trained on."""
    batches = _Batches()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=11,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(root),
        callbacks=[batches, ModelCheckpoint(dirpath=str(root / "ckpt"), every_n_train_steps=2, save_top_k=-1)],
    )
    module = SFTModule(str(model_dir), optimizer=OptimizerConfig(lr=1e-3))
    data = SFTDataModule(train_path=str(sft_dir), tokenizer_path=str(model_dir), batch_size=4, max_length=512)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert trainer.global_step == 11
    return batches.seen


def test_a_fit_resumed_mid_epoch_trains_on_the_batches_of_the_uninterrupted_run(tmp_path, model_dir, sft_dir):
    uninterrupted = fit(model_dir, sft_dir, tmp_path / "full")
    assert len(uninterrupted) == 11 and uninterrupted[8:] != uninterrupted[:3]  # epoch 1 has its own plan
    for step in (2, 6, 8):  # mid-epoch, late in the epoch, and at its end
        resumed = fit(
            model_dir, sft_dir, tmp_path / f"from{step}", tmp_path / "full" / "ckpt" / f"epoch=0-step={step}.ckpt"
        )
        assert resumed == uninterrupted[step:], step
