"""SFTModule: the loss by hand, a real tiny fit (loss, parameters, TensorBoard, HF export), resume, LoRA, loss_on."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bridge_pl.cli import main as bridge_main
from bridge_pl.data.collate import pack_examples, sft_collate
from bridge_pl.data.datamodules import SFTDataModule
from bridge_pl.data.prompts import LLAMA_MINIMAL_TEMPLATE
from bridge_pl.models.model_io import load_model, load_tokenizer
from bridge_pl.modules import LoraConfig, OptimizerConfig, SchedulerConfig, SFTModule, token_cross_entropy
from bridge_pl.modules.optim import lr_multiplier

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore:`is_gradient_checkpointing`:FutureWarning"
)
TAGS = ("train/loss", "train/ppl", "train/lr", "train/grad_norm", "train/tokens_per_sec", "val/loss", "val/ppl")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sft"
    argv = ["data", "generate", "--split", "sft", "--size", "24", "--style", "plain", "--out", str(out)]
    assert bridge_main(argv) == 0
    return out


def make_data(model_dir: Path, sft_dir: Path, **kwargs) -> SFTDataModule:
    kwargs = {"max_length": 256, "truncation": "truncate", "batch_size": 4, **kwargs}  # short rows: fast steps
    return SFTDataModule(train_path=str(sft_dir), val_path=str(sft_dir), tokenizer_path=str(model_dir), **kwargs)


def make_trainer(root: Path, max_steps: int, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        log_every_n_steps=1,
        gradient_clip_val=1.0,
        limit_val_batches=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=TensorBoardLogger(str(root), name="sft", default_hp_metric=False),
        default_root_dir=str(root),
    )
    return L.Trainer(**{**defaults, **kwargs})


def fast_module(model_dir: Path, **kwargs) -> SFTModule:
    """A from-scratch tiny model needs a large learning rate to move in a few steps."""
    return SFTModule(str(model_dir), optimizer=OptimizerConfig(lr=3e-3, weight_decay=0.0), **kwargs)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, model_dir, sft_dir):
    """One 6-step fit shared by the assertions below: (trainer, module, loss before, loss after)."""
    L.seed_everything(0)
    root = tmp_path_factory.mktemp("fit")
    data = make_data(model_dir, sft_dir)
    module = fast_module(model_dir, save_hf_every_n_steps=3)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    module.configure_model()
    before = fixed_batch_loss(module, batch)
    trainer = make_trainer(root, max_steps=6)
    trainer.fit(module, datamodule=data)
    return trainer, module, before, fixed_batch_loss(module, batch)


def fixed_batch_loss(module: SFTModule, batch: dict) -> float:
    with torch.no_grad():
        total, count = module._loss_terms(batch)
    return float(total / count)


# ------------------------------------------------------------------------------------------------ the loss
def test_token_cross_entropy_matches_hand_computation():
    # Vocabulary 3. Row 0 predicts tokens 1 and 2 (labels at positions 1, 2); row 1 has one label token.
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]] * 2))  # (2, 3, 3)
    labels = torch.tensor([[-100, 1, 2], [-100, -100, 0]])
    total, count = token_cross_entropy(logits, labels)
    # row 0: -ln p(1 | pos 0) - ln p(2 | pos 1) = -ln 0.25 - ln 0.8; row 1: -ln p(0 | pos 1) = -ln 0.1
    expected = -math.log(0.25) - math.log(0.8) - math.log(0.1)
    assert int(count) == 3
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_token_cross_entropy_does_not_predict_across_packed_sequences():
    logits = torch.zeros(1, 4, 5)  # uniform: every predicted token costs ln 5
    labels = torch.tensor([[1, 2, 3, 4]])
    positions = torch.tensor([[0, 1, 0, 1]])  # two packed sequences of 2 tokens
    total, count = token_cross_entropy(logits, labels, positions)
    assert int(count) == 2  # position 1 -> token 2 and position 3 -> token 4; not the 2 -> 3 boundary
    assert float(total) == pytest.approx(2 * math.log(5), rel=1e-5)


def test_lr_schedule_shapes():
    cosine = SchedulerConfig(name="cosine", warmup_steps=0, min_lr_ratio=0.1)
    assert lr_multiplier(0, cosine, 10) == pytest.approx(1.0)
    assert lr_multiplier(5, cosine, 10) == pytest.approx(0.55)
    assert lr_multiplier(10, cosine, 10) == pytest.approx(0.1)
    assert lr_multiplier(7, SchedulerConfig(), 10) == 1.0


def test_invalid_arguments_are_reported_together(tmp_path):
    with pytest.raises(ValueError) as err:
        SFTModule(
            str(tmp_path / "nowhere"),
            optimizer=OptimizerConfig(lr=-1.0),
            scheduler=SchedulerConfig(min_lr_ratio=2.0),
            lora=LoraConfig(r=0),
            save_hf_every_n_steps=0,
        )
    message = str(err.value)
    for key in ("optimizer.lr", "scheduler.min_lr_ratio", "lora.r", "save_hf_every_n_steps", "model_path"):
        assert f"model.init_args.{key}" in message
    assert "bridge model init" in message


def test_right_padded_batches_drop_the_mask_without_changing_the_loss(model_dir):
    module = SFTModule(str(model_dir))
    module.configure_model()
    torch.manual_seed(0)
    ids = torch.randint(10, 500, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # row 1: 7 real tokens, then padding
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        masked = module.model(input_ids=ids, attention_mask=mask).logits
        reference = token_cross_entropy(masked, labels)
        total, count = module._loss_terms({"input_ids": ids, "attention_mask": mask, "labels": labels})
    assert int(count) == int(reference[1]) == 11 + 6
    assert float(total) == pytest.approx(float(reference[0]), rel=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_sequences_do_not_see_each_other(model_dir, attention):
    module = SFTModule(str(model_dir), attn_implementation=attention)
    module.configure_model()
    module.train()  # training mode, where transformers would otherwise build a KV cache
    torch.manual_seed(0)
    first, second = torch.randint(10, 500, (7,)).tolist(), torch.randint(10, 500, (5,)).tolist()
    rows = pack_examples([{"input_ids": first, "labels": first}, {"input_ids": second, "labels": second}], 16)
    batch = sft_collate(rows, pad_id=0)
    assert batch["input_ids"].shape == (1, 12)  # one row holding both documents
    with torch.no_grad():
        packed = module(batch["input_ids"], batch["attention_mask"], batch["position_ids"])[0]
        alone = [module(torch.tensor([ids]))[0] for ids in (first, second)]
    torch.testing.assert_close(packed[:7], alone[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed[7:], alone[1], rtol=1e-4, atol=1e-4)


def test_packed_rows_go_to_flash_kernels_as_one_row(model_dir, monkeypatch):
    """Flash kernels see packing only within one row: a (B, T) packed batch must reach them as (1, B * T)."""
    module = SFTModule(str(model_dir))
    module.configure_model()
    torch.manual_seed(0)
    docs = [torch.randint(10, 500, (n,)).tolist() for n in (7, 5, 9, 3)]
    rows = pack_examples([{"input_ids": d, "labels": d} for d in docs], 12)  # [7, 5], [9, 3]: two full rows
    batch = sft_collate(rows, pad_id=0)
    assert batch["input_ids"].shape == (2, 12)
    seen = []
    forward = module.model.forward
    monkeypatch.setattr(module.model, "forward", lambda **kw: seen.append(kw["input_ids"].shape) or forward(**kw))
    monkeypatch.setattr("bridge_pl.modules.sft._varlen_kernel", lambda model: True)  # sdpa stands in for flash
    with torch.no_grad():
        packed = module(batch["input_ids"], batch["attention_mask"], batch["position_ids"])
        alone = [module.model(input_ids=torch.tensor([d])).logits[0] for d in docs]
    assert seen[0] == (1, 24) and packed.shape[:2] == (2, 12)
    for got, want in zip((packed[0, :7], packed[0, 7:], packed[1, :9], packed[1, 9:]), alone, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------ a real fit
def test_fit_lowers_the_loss_and_changes_every_weight(fitted, model_dir):
    trainer, module, before, after = fitted
    assert trainer.global_step == 6
    assert after < before - 0.1, (before, after)
    initial = load_model(model_dir).state_dict()
    trained = module.model.state_dict()
    unchanged = [k for k, v in initial.items() if torch.equal(v, trained[k]) and "rotary" not in k]
    assert not unchanged


def test_fit_logs_every_metric_to_tensorboard(fitted):
    trainer = fitted[0]
    events = EventAccumulator(trainer.logger.log_dir)
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert set(TAGS) <= scalars
    assert len(events.Scalars("train/loss")) == 6
    ppl, loss = events.Scalars("train/ppl")[-1].value, events.Scalars("train/loss")[-1].value
    assert ppl == pytest.approx(math.exp(loss), rel=1e-4)
    assert events.Scalars("train/lr")[0].value == pytest.approx(3e-3)
    assert all(e.value > 0 for e in events.Scalars("train/tokens_per_sec"))
    assert all(e.value > 0 for e in events.Scalars("train/grad_norm"))


def test_fit_writes_loadable_hugging_face_directories(fitted):
    trainer, module = fitted[:2]
    hf_dir = Path(trainer.log_dir) / "hf_model"
    assert (hf_dir / "config.json").is_file() and (hf_dir / "tokenizer.json").is_file()
    loaded = load_model(hf_dir)
    for key, value in module.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert sorted(p.name for p in hf_dir.glob("step_*")) == ["step_3", "step_6"]
    assert (hf_dir / "step_3" / "model.safetensors").is_file()


def test_accumulated_fit_exports_the_data_chat_template_and_saves_no_untrained_step(tmp_path, model_dir, sft_dir):
    module = fast_module(model_dir, save_hf_every_n_steps=1, hf_output_dir=str(tmp_path / "out"))
    data = make_data(model_dir, sft_dir, chat_template="llama-minimal")
    trainer = make_trainer(tmp_path, max_steps=2, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("step_*")) == ["step_1", "step_2"]  # no step_0: nothing trained yet
    for directory in (out, out / "step_1"):  # the template the model was trained on, not the directory's own
        assert load_tokenizer(directory).chat_template == LLAMA_MINIMAL_TEMPLATE


# ------------------------------------------------------------------------------------------------ resume
class _StartState(Callback):
    """Records the step and the optimizer state when (re)started training begins."""

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        state = trainer.optimizers[0].state_dict()["state"]
        self.optimizer = {k: {n: t.clone() for n, t in v.items() if torch.is_tensor(t)} for k, v in state.items()}
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]


def test_resume_continues_at_the_same_step_with_the_same_optimizer_state(tmp_path, model_dir, sft_dir):
    scheduler = SchedulerConfig(name="linear", warmup_steps=2)
    L.seed_everything(0)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    first = make_trainer(tmp_path / "a", max_steps=4, callbacks=[checkpoints])
    first.fit(fast_module(model_dir, scheduler=scheduler), datamodule=make_data(model_dir, sft_dir))
    ckpt = tmp_path / "ckpt" / "epoch=0-step=2.ckpt"
    saved = torch.load(ckpt, weights_only=False)

    start = _StartState()
    second = make_trainer(tmp_path / "b", max_steps=4, callbacks=[start])
    second.fit(fast_module(model_dir, scheduler=scheduler), datamodule=make_data(model_dir, sft_dir), ckpt_path=ckpt)

    assert start.step == 2 == saved["global_step"]
    saved_state = saved["optimizer_states"][0]["state"]
    assert start.optimizer.keys() == saved_state.keys() and start.optimizer
    for index, tensors in start.optimizer.items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, saved_state[index][name]), (index, name)
    assert start.lr == pytest.approx(saved["optimizer_states"][0]["param_groups"][0]["lr"])
    assert second.global_step == 4


# ------------------------------------------------------------------------------------------------ LoRA
def test_lora_trains_only_the_adapters_and_saves_a_merged_model(tmp_path, model_dir, sft_dir):
    L.seed_everything(0)
    module = fast_module(model_dir, lora=LoraConfig(r=4, alpha=8), hf_output_dir=str(tmp_path / "merged"))
    trainer = make_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=make_data(model_dir, sft_dir))

    base = load_model(model_dir).state_dict()
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for name, param in module.model.named_parameters():
        if "base_layer" in name or not param.requires_grad:  # frozen weights are the base model's
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(param, base[key]), name
    merged = load_model(tmp_path / "merged").state_dict()
    assert merged.keys() == base.keys()  # a plain model: no adapter weights left
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all("proj" in k for k in changed)


# ------------------------------------------------------------------------------------------------ loss_on
def test_answer_only_labels_reach_the_loss(model_dir, sft_dir):
    module = SFTModule(str(model_dir))
    module.configure_model()
    batches = {}
    for loss_on in ("all", "answer"):
        data = make_data(model_dir, sft_dir, loss_on=loss_on, batching="pad", max_length=1024, truncation="error")
        data.setup("fit")
        batches[loss_on] = next(iter(data.val_dataloader()))
    full, answer = batches["all"], batches["answer"]
    assert torch.equal(full["input_ids"], answer["input_ids"])
    with torch.no_grad():
        _, count_all = module._loss_terms(full)
        _, count_answer = module._loss_terms(answer)
    # every non-pad token but the first of each row is predicted with loss_on="all"; the answer is a part of it
    assert int(count_all) == int(full["attention_mask"].sum()) - full["input_ids"].shape[0]
    assert 0 < int(count_answer) < int(count_all)
    assert int(count_answer) == int((answer["labels"][:, 1:] != -100).sum())
