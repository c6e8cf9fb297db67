"""The data modules on real generated data and the project tokenizer: batch contracts, loss masks, packing,
bucketing, truncation, rank sharding, the generated stream's determinism, iGSM problems from files, prompt
batches and bad input (errors naming the data file and its line)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

from bridge_pl.augment.bridge import PRESETS
from bridge_pl.data.datamodules import IGSMDataModule, PromptPoolDataModule, SFTDataModule
from bridge_pl.data.encoding import IGNORE_INDEX, encode_conversations, load_chat_tokenizer
from bridge_pl.data.igsm import encode_problems
from bridge_pl.data.io import DatasetError, write_dataset
from bridge_pl.data.loaders import BatchPlanSampler
from bridge_pl.data.prompts import LLAMA_MINIMAL_TEMPLATE, format_prompt
from bridge_pl.data.records import OFFICIAL_COLUMNS, AnswerStyle, generate_rows
from bridge_pl.models.model_io import load_tokenizer
from bridge_pl.task.generator import GeneratorConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


@pytest.fixture(scope="module")
def sft_rows() -> list[dict]:
    """Long BRIDGE answers (op 15-20) mixed with short plain ones (op 2-6): lengths vary as in a real mix."""
    long = generate_rows(GeneratorConfig(), 100, 40, AnswerStyle("bridge"))
    short = generate_rows(GeneratorConfig(min_op=2, max_op=6), 101, 24, AnswerStyle("plain"))
    rows = [*long, *short]
    order = list(range(len(rows)))
    order.sort(key=lambda i: (i * 37) % len(rows))  # interleave the two kinds
    return [rows[i] for i in order]


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, sft_rows) -> Path:
    out = tmp_path_factory.mktemp("data") / "sft"
    write_dataset(out, sft_rows, config={"split": "sft"})
    return out


@pytest.fixture(scope="module")
def official_file(tmp_path_factory, sft_rows) -> Path:
    """The official iGSM-reasoning columns only, as a JSONL file."""
    path = tmp_path_factory.mktemp("official") / "test.jsonl"
    lines = [json.dumps({c: row[c] for c in OFFICIAL_COLUMNS}) for row in sft_rows[:12]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sft_module(model_dir, sft_dir, **kwargs) -> SFTDataModule:
    kwargs = {"max_length": 1024, "batch_size": 4, **kwargs}
    return SFTDataModule(train_path=str(sft_dir), tokenizer_path=str(model_dir), **kwargs)


def fake_trainer(rank: int, world: int, epoch: int = 0) -> SimpleNamespace:
    """What the data modules read from a Trainer under DDP."""
    return SimpleNamespace(
        distributed_sampler_kwargs={"num_replicas": world, "rank": rank},
        current_epoch=epoch,
        global_step=0,
        accumulate_grad_batches=1,
    )


def epoch_batches(data) -> list[dict]:
    return list(data.train_dataloader())


# ------------------------------------------------------------------------------------------------ SFT batches
def test_sft_batches_follow_the_contract(model_dir, sft_dir):
    data = sft_module(model_dir, sft_dir)
    data.setup("fit")
    batches = epoch_batches(data)
    assert sum(b["input_ids"].shape[0] for b in batches) == 64
    for batch in batches:
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        assert ids.dtype == mask.dtype == labels.dtype == torch.long and ids.shape == mask.shape == labels.shape
        assert torch.equal(mask, mask.sort(dim=1, descending=True).values)  # right padding: 1s, then 0s
        assert (labels[mask == 0] == IGNORE_INDEX).all() and (ids[mask == 0] == data.pad_id).all()
        assert (labels[:, 0] == IGNORE_INDEX).all()  # the first token is never predicted
        real = (mask == 1) & (torch.arange(ids.shape[1]) > 0)
        assert torch.equal(labels[real], ids[real])  # loss_on="all": every other real token
        assert batch["num_tokens"] == int((labels != IGNORE_INDEX).sum())


def test_loss_on_answer_labels_start_at_think(model_dir, sft_dir, tokenizer, sft_rows):
    data = sft_module(model_dir, sft_dir, loss_on="answer", val_path=str(sft_dir))
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))  # file order
    for row, ids, labels, mask in zip(
        sft_rows[:4], batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        end = int(mask.sum())
        first = int((labels != IGNORE_INDEX).nonzero()[0])
        assert tokenizer.decode(ids[first : first + 1]) == "<think>"
        prompt = format_prompt(tokenizer, row["query"]).removesuffix("<think>")
        assert first == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert (labels[first:end] == ids[first:end]).all() and (labels[end:] == IGNORE_INDEX).all()
        assert tokenizer.decode(ids[first:end]) == row["response"] + "<|im_end|>\n"


def test_packing_restarts_positions_and_conserves_tokens(model_dir, sft_dir):
    plain = sft_module(model_dir, sft_dir, batching="pad")
    packed = sft_module(model_dir, sft_dir, batching="pack")
    plain.setup("fit")
    packed.setup("fit")
    documents = sorted(tuple(e["input_ids"]) for e in plain.train_examples)
    seen, num_tokens = [], 0
    for batch in epoch_batches(packed):
        assert batch["input_ids"].shape[1] <= 1024
        for ids, mask, labels, positions in zip(
            batch["input_ids"], batch["attention_mask"], batch["labels"], batch["position_ids"], strict=True
        ):
            real = int(mask.sum())
            starts = (positions[:real] == 0).nonzero().flatten().tolist() + [real]
            assert (labels[starts[:-1]] == IGNORE_INDEX).all()  # no loss across a document boundary
            seen += [tuple(ids[a:b].tolist()) for a, b in itertools.pairwise(starts)]
            for a, b in itertools.pairwise(starts):
                assert positions[a:b].tolist() == list(range(b - a))
        num_tokens += batch["num_tokens"]
    assert sorted(seen) == documents  # every conversation once, intact
    assert num_tokens == sum(len(d) - 1 for d in documents)
    assert packed.stats["sequences"] < packed.stats["conversations"] == 64


def test_bucketing_pads_far_less_than_plain_batches(model_dir, sft_dir):
    fractions = {}
    for batching in ("bucket", "pad", "pack"):
        data = sft_module(model_dir, sft_dir, batching=batching, batch_size=8)
        data.setup("fit")
        fractions[batching] = data.stats["real_token_fraction"]
        measured = epoch_batches(data)
        real = sum(int(b["attention_mask"].sum()) for b in measured)
        assert real / sum(b["input_ids"].numel() for b in measured) == pytest.approx(fractions[batching])
    assert fractions["bucket"] > 0.9
    assert fractions["pad"] < fractions["bucket"] - 0.1


def test_truncation_modes(model_dir, sft_dir):
    lengths = [len(e["input_ids"]) for e in _examples(model_dir, sft_dir)]
    longest, over = max(lengths), sum(n > 600 for n in lengths)
    assert 0 < over < 64
    with pytest.raises(ValueError) as err:
        sft_module(model_dir, sft_dir, max_length=600).setup("fit")
    message = str(err.value)
    assert f"{over} of 64 examples are longer than data.max_length=600" in message
    assert f"longest: {longest}" in message and "Raise data.max_length to at least" in message
    assert "data.truncation" in message and "drop" in message and "truncate" in message

    with pytest.warns(UserWarning, match=f"dropped {over}"):
        dropped = sft_module(model_dir, sft_dir, max_length=600, truncation="drop")
        dropped.setup("fit")
    assert len(dropped.train_examples) == 64 - over
    assert dropped.truncation_report["train"]["dropped"] == over

    with pytest.warns(UserWarning, match=f"cut {over}"):
        cut = sft_module(model_dir, sft_dir, max_length=600, truncation="truncate")
        cut.setup("fit")
    assert len(cut.train_examples) == 64 and max(len(e["input_ids"]) for e in cut.train_examples) == 600
    assert cut.truncation_report["train"] | {"truncated": over, "longest": longest} == cut.truncation_report["train"]


def _examples(model_dir, sft_dir):
    data = sft_module(model_dir, sft_dir, max_length=2048)  # the model's max_position_embeddings
    data.setup("fit")
    return data.train_examples


def test_val_fraction_is_a_seeded_split(model_dir, sft_dir):
    data = sft_module(model_dir, sft_dir, val_fraction=0.25, seed=3)
    data.setup("fit")
    again = sft_module(model_dir, sft_dir, val_fraction=0.25, seed=3)
    again.setup("fit")
    assert len(data.val_examples) == 16 and len(data.train_examples) == 48
    assert data.val_examples == again.val_examples
    train = {tuple(e["input_ids"]) for e in data.train_examples}
    assert not train & {tuple(e["input_ids"]) for e in data.val_examples}
    first = [next(iter(data.val_dataloader()))["input_ids"] for _ in range(2)]
    assert torch.equal(*first)  # no shuffle


def test_held_out_rows_are_named_by_where_they_came_from(model_dir, sft_dir):
    with pytest.warns(UserWarning) as record:
        data = sft_module(model_dir, sft_dir, val_fraction=0.25, seed=3, max_length=600, truncation="drop")
        data.setup("fit")
    messages = [str(w.message) for w in record if "data.max_length=600" in str(w.message)]
    assert any(m.startswith("data.train_path: ") for m in messages)
    assert any(m.startswith("data.val_fraction of data.train_path: ") for m in messages)  # no val_path is set
    assert not any("data.val_path" in m for m in messages)
    assert data.truncation_report["val"]["dropped"] > 0


# ------------------------------------------------------------------------------------------------ sharding
def test_bucket_sampler_shards_ranks_disjointly_and_evenly():
    lengths = [(i * 7919) % 500 + 10 for i in range(101)]
    for epoch in (0, 1):
        shards = []
        for rank in (0, 1):
            sampler = BatchPlanSampler(lengths, 8, num_replicas=2, rank=rank, seed=5)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            assert len(sampler) == len(shards[-1])
        indices = [[i for batch in shard for i in batch] for shard in shards]
        assert len(shards[0]) == len(shards[1])  # equal number of steps on every rank
        assert not set(indices[0]) & set(indices[1])
        assert sorted(indices[0] + indices[1]) == list(range(101))
    sampler = BatchPlanSampler(lengths, 8, seed=5)
    assert list(sampler) == list(sampler)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0  # a new plan every epoch


def test_sft_data_module_shards_by_trainer_rank(model_dir, sft_dir):
    loaders = []
    for rank in (0, 1):
        data = sft_module(model_dir, sft_dir, batch_size=5)
        data.trainer = fake_trainer(rank, 2)
        data.setup("fit")
        loaders.append(data.train_dataloader())
    plans = [list(loader.sampler) for loader in loaders]
    assert len(loaders[0]) == len(loaders[1]) == 7  # 13 batches of 5, split to 14
    indices = [sorted(i for batch in plan for i in batch) for plan in plans]
    assert not set(indices[0]) & set(indices[1]) and sorted(indices[0] + indices[1]) == list(range(64))


def test_drop_last_keeps_whole_optimizer_steps(model_dir, sft_dir):
    data = sft_module(model_dir, sft_dir, batch_size=5, drop_last=True)
    data.trainer = SimpleNamespace(**{**vars(fake_trainer(0, 2)), "accumulate_grad_batches": 3})
    data.setup("fit")
    left_out = []
    for epoch in (0, 1):
        data.trainer.current_epoch = epoch
        loader = data.train_dataloader()
        plan = list(loader.sampler)
        assert len(loader) == len(plan) == 6  # 7 batches per rank, cut to 2 steps of 3
        full = loader.sampler.plan(epoch)[0::2]
        assert plan == full[:6]  # the shuffled plan's tail is left out ...
        left_out.append(sorted(full[6]))
    assert left_out[0] != left_out[1]  # ... a different one each epoch
    with pytest.raises(ValueError, match="fewer than one optimizer step of 8"):
        BatchPlanSampler([10] * 20, 4, multiple_of=8)


# ------------------------------------------------------------------------------------------------ iGSM stream
def igsm_module(model_dir, **kwargs) -> IGSMDataModule:
    kwargs = {"batch_size": 2, "val_size": 4, "generator": {"min_op": 4, "max_op": 8}, **kwargs}
    return IGSMDataModule(tokenizer_path=str(model_dir), **kwargs)


def test_igsm_stream_is_deterministic(model_dir):
    firsts = []
    for _ in range(2):
        data = igsm_module(model_dir)
        data.setup("fit")
        firsts.append(list(itertools.islice(data.train_dataloader(), 2)))
    for a, b in zip(*firsts, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert firsts[0][0]["num_tokens"] > 0


def test_igsm_ranks_and_workers_draw_disjoint_problems(model_dir, tokenizer):
    data = igsm_module(model_dir, style="plain")
    data.setup("fit")
    # 2 ranks x 2 workers: four disjoint slots that together cover problems 0..15.
    slots = [
        list(itertools.islice(data.train_stream(rank, 2).examples(worker, 2), 4))
        for rank in (0, 1)
        for worker in (0, 1)
    ]
    problems = [[e["problem"] for e in slot] for slot in slots]
    assert problems[0] == [0, 4, 8, 12] and problems[3] == [3, 7, 11, 15]
    assert sorted(p for slot in problems for p in slot) == list(range(16))
    texts = {tokenizer.decode(e["input_ids"]) for slot in slots for e in slot}
    assert len(texts) == 16  # different problems, not only different numbers
    # real worker processes: the first examples out of a 2-worker loader are problems 0..5
    loader = DataLoader(data.train_stream(), batch_size=None, num_workers=2)
    assert sorted(e["problem"] for e in itertools.islice(loader, 6)) == list(range(6))


def test_igsm_validation_set_is_fixed_and_separate(model_dir):
    data = igsm_module(model_dir, train_size=6, val_size=5)
    data.setup("fit")
    assert len(data.val_examples) == 5 and len(data.train_examples) == 6
    train = {tuple(e["input_ids"]) for e in data.train_examples}
    assert not train & {tuple(e["input_ids"]) for e in data.val_examples}
    assert sum(b["input_ids"].shape[0] for b in data.train_dataloader()) == 6
    val = [b["input_ids"] for b in data.val_dataloader()]
    assert [v.shape[0] for v in val] == [2, 2, 1]


def test_igsm_overlong_problems_follow_the_truncation_setting(model_dir):
    cut = igsm_module(model_dir, max_length=120, truncation="truncate", val_size=0)
    cut.setup("fit")
    with pytest.warns(UserWarning, match="more than data.max_length=120: truncate"):
        examples = list(itertools.islice(cut.train_stream().examples(), 3))
    assert [len(e["input_ids"]) for e in examples] == [120] * 3 and [e["problem"] for e in examples] == [0, 1, 2]
    strict = igsm_module(model_dir, max_length=120, val_size=0)
    strict.setup("fit")
    with pytest.raises(ValueError, match=r"problem 0 of stream 0 has \d+ tokens, more than data.max_length=120"):
        next(strict.train_stream().examples())
    drop = igsm_module(model_dir, max_length=120, truncation="drop", val_size=0)
    drop.setup("fit")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="last 100 problems were all longer"):
        next(drop.train_stream().examples())  # every problem is too long: an error, not an endless loop
    with pytest.raises(ValueError, match="1 examples are longer than data.max_length=120"):
        igsm_module(model_dir, max_length=120, val_size=1).setup("fit")  # the validation set fails early


def test_igsm_arguments_are_checked(model_dir):
    with pytest.raises(ValueError, match="data.generator: unknown field.*min_ops"):
        igsm_module(model_dir, generator={"min_ops": 3})
    with pytest.raises(ValueError, match="(?s)data.generator: .*min_op=9, max_op=3"):
        igsm_module(model_dir, generator={"min_op": 9, "max_op": 3})
    with pytest.raises(ValueError) as err:
        igsm_module(model_dir, behaviors="most", batch_size=0, val_seed=0)
    assert all(key in str(err.value) for key in ("data.behaviors", "data.batch_size", "data.val_seed"))


# ------------------------------------------------------------------------------------------------ iGSM files
EASY = GeneratorConfig(min_op=2, max_op=6)


@pytest.fixture(scope="module")
def problems_dir(tmp_path_factory) -> Path:
    """12 problems written by the dataset writer in the paper's BRIDGE style (what `bridge data generate` does)."""
    out = tmp_path_factory.mktemp("problems") / "bridge"
    write_dataset(out, generate_rows(EASY, 11, 12, AnswerStyle("bridge", PRESETS["full"])), config={})
    return out


def test_igsm_problems_from_a_file_are_answered_in_the_style(model_dir, problems_dir, tokenizer):
    rows = [json.loads(line) for line in (problems_dir / "data.jsonl").read_text().splitlines()]
    same = igsm_module(model_dir, path=str(problems_dir), style="bridge", behaviors="full", val_size=0)
    same.setup("fit")
    expected = encode_conversations(tokenizer, [(r["query"], r["response"]) for r in rows])
    assert same.train_examples == expected  # the file's own rows: the answers are written the same way
    plain = igsm_module(model_dir, path=str(problems_dir), style="plain", val_size=0, train_size=5)
    plain.setup("fit")
    assert len(plain.train_examples) == 5 and plain.truncation_report["train"]["examples"] == 5
    for example, row in zip(plain.train_examples, rows, strict=False):
        text = tokenizer.decode(example["input_ids"])
        assert row["query"] in text and row["response"] not in text  # same problem, plain answer
    batches = list(plain.train_dataloader())
    assert sum(b["input_ids"].shape[0] for b in batches) == 5 and all(b["num_tokens"] > 0 for b in batches)


def test_igsm_file_problems_are_reshuffled_every_epoch_and_sharded(model_dir, problems_dir):
    def plans(epoch: int) -> list[list[list[int]]]:
        out = []
        for rank in (0, 1):
            data = igsm_module(model_dir, path=str(problems_dir), batch_size=2, val_size=0, seed=4)
            data.trainer = fake_trainer(rank, 2, epoch)
            data.setup("fit")
            out.append(list(data.train_dataloader().sampler))
        return out

    epoch0, epoch1 = plans(0), plans(1)
    for shards in (epoch0, epoch1):
        indices = [[i for batch in shard for i in batch] for shard in shards]
        assert len(shards[0]) == len(shards[1]) and not set(indices[0]) & set(indices[1])
        assert sorted(indices[0] + indices[1]) == list(range(12))
    assert epoch0 != epoch1 and plans(0) == epoch0  # seeded, and a new order every epoch


def test_igsm_official_text_rows_are_read_as_problems(tmp_path, model_dir):
    rows = list(generate_rows(EASY, 12, 3, AnswerStyle("plain")))
    path = tmp_path / "official.jsonl"
    path.write_text("".join(json.dumps({c: r[c] for c in OFFICIAL_COLUMNS}) + "\n" for r in rows))
    data = igsm_module(model_dir, path=str(path), style="plain", val_size=0)
    data.setup("fit")
    assert len(data.train_examples) == 3


def test_igsm_chat_template_option(model_dir, problems_dir):
    llama, _ = load_chat_tokenizer(str(model_dir), chat_template="llama-minimal")
    rows = [json.loads(line) for line in (problems_dir / "data.jsonl").read_text().splitlines()]
    data = igsm_module(model_dir, path=str(problems_dir), behaviors="full", chat_template="llama-minimal", val_size=2)
    data.setup("fit")
    assert data.tokenizer.chat_template == LLAMA_MINIMAL_TEMPLATE
    assert data.train_examples == encode_conversations(llama, [(r["query"], r["response"]) for r in rows])
    stream = next(data.train_stream().examples())  # the generated problems use it too
    assert stream["input_ids"] == encode_problems(data.config, 0, [0], data.style, llama, "all")[0]["input_ids"]
    default = igsm_module(model_dir, path=str(problems_dir), behaviors="full", val_size=2)
    default.setup("fit")
    assert default.train_examples != data.train_examples and default.val_examples != data.val_examples


@pytest.mark.parametrize(
    ("name", "lines", "expected"),
    [
        ("missing", None, ["no such file"]),
        ("empty", [], ["the file is empty"]),
        ("columns", [json.dumps({"response": "R"})], ["line 1: missing column(s) query"]),
        ("blank", ["", json.dumps({"query": " "})], ["line 2: empty or non-text query"]),
        (
            "unreadable",
            ["", json.dumps({"query": "Hello there, how many?"})],
            ["1 row(s) hold no readable problem", "line 2:"],
        ),
    ],
)
def test_bad_igsm_files_name_the_key_file_and_line(tmp_path, model_dir, name, lines, expected):
    path = tmp_path / f"{name}.jsonl"
    if lines is not None:
        write_lines(path, lines) if lines else path.touch()
    with pytest.raises(DatasetError) as err:
        igsm_module(model_dir, path=str(path), val_size=0).setup("fit")
    message = str(err.value)
    assert message.startswith("data.path: ") and str(path) in message
    assert all(part in message for part in expected), message


def test_igsm_validation_problems_must_not_be_in_the_file(tmp_path, model_dir):
    write_dataset(
        tmp_path / "seed1", generate_rows(GeneratorConfig(min_op=4, max_op=8), 1, 6, AnswerStyle("plain")), config={}
    )
    with pytest.raises(ValueError, match="3 of the 3 validation problems .*data.val_seed=1.* are also in the file"):
        igsm_module(model_dir, path=str(tmp_path / "seed1"), style="plain", val_size=3).setup("fit")  # seed 0: val 1
    apart = igsm_module(model_dir, path=str(tmp_path / "seed1"), style="plain", val_size=3, val_seed=2)
    apart.setup("fit")
    assert len(apart.val_examples) == 3 and len(apart.train_examples) == 6


# ------------------------------------------------------------------------------------------------ prompts
def test_prompt_batches_are_left_padded_with_ground_truth(model_dir, official_file, tokenizer, sft_rows):
    data = PromptPoolDataModule(tokenizer_path=str(model_dir), train_path=str(official_file), batch_size=5)
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert sorted(i for b in batches for i in b["index"]) == list(range(12))
    for batch in batches:
        mask = batch["attention_mask"]
        assert (mask[:, -1] == 1).all() and torch.equal(mask, mask.sort(dim=1).values)  # left padding
        for prompt, ids, m, truth, ops, index in zip(
            batch["prompts"],
            batch["input_ids"],
            mask,
            batch["ground_truth"],
            batch["num_ops"],
            batch["index"],
            strict=True,
        ):
            source = sft_rows[index]
            assert prompt.endswith("<think>") and prompt == format_prompt(tokenizer, source["query"])
            assert ids[m == 1].tolist() == tokenizer(prompt, add_special_tokens=False)["input_ids"]
            assert (ids[m == 0] == data.pad_id).all()
            assert truth == str(source["final_answer"]) and isinstance(truth, str)
            assert ops == source["num_ops"]
    again = PromptPoolDataModule(tokenizer_path=str(model_dir), train_path=str(official_file), batch_size=5)
    again.setup("fit")
    assert [b["index"] for b in again.train_dataloader()] == [b["index"] for b in batches]  # seeded shuffle
    assert [b["index"] for b in batches] != [list(range(5)), list(range(5, 10)), [10, 11]]


def test_prompt_overlong_policies(model_dir, official_file):
    def module(**kwargs):
        data = PromptPoolDataModule(
            tokenizer_path=str(model_dir), val_path=str(official_file), max_prompt_length=200, **kwargs
        )
        data.setup("validate")
        return data

    kept = pytest.warns(UserWarning, match="prompts are longer than data.max_prompt_length=200")
    with kept:
        warned = module()
    over = warned.overlong_report["val"]["over_length"]
    assert 0 < over < 12 and len(warned.examples["val"]) == 12
    with pytest.warns(UserWarning, match="dropped"):
        assert len(module(overlong="drop").examples["val"]) == 12 - over
    with pytest.raises(ValueError, match=f"{over} of 12 prompts are longer"):
        module(overlong="error")


def test_prompt_stage_needs_its_path(model_dir, official_file):
    data = PromptPoolDataModule(tokenizer_path=str(model_dir), test_path=str(official_file))
    with pytest.raises(ValueError, match="data.train_path is not set, but `fit` needs train prompts"):
        data.setup("fit")
    data.setup("test")
    assert len(data.test_dataloader().dataset) == 12 and data.val_dataloader() == []


# ------------------------------------------------------------------------------------------------ bad input
def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"query": "Q?", "response": "<think> A </think>", "num_ops": 1, "final_answer": 3})


@pytest.mark.parametrize(
    ("name", "lines", "expected"),
    [
        ("missing", None, ["data.train_path", "no such file"]),
        ("empty", [], ["data.train_path", "empty"]),
        ("columns", [json.dumps({"query": "Q?", "final_answer": 3})], ["missing column(s) response", "line 1"]),
        ("malformed", [GOOD, "{not json"], ["line 2", "not valid JSON"]),
        ("blank", [GOOD, json.dumps({"query": "Q?", "response": "  "})], ["line 2: empty or non-text response", "fix"]),
    ],
)
def test_bad_sft_input_names_key_file_and_row(tmp_path, model_dir, name, lines, expected):
    path = tmp_path / f"{name}.jsonl"
    if lines is not None:
        write_lines(path, lines) if lines else path.touch()
    with pytest.raises(DatasetError) as err:
        SFTDataModule(train_path=str(path), tokenizer_path=str(model_dir)).setup("fit")
    message = str(err.value)
    assert message.startswith("data.train_path") and str(path) in message
    assert all(part in message for part in expected), message


def test_bad_prompt_answers_are_listed(tmp_path, model_dir):
    rows = [GOOD, json.dumps({"query": "Q?", "final_answer": "twelve"}), json.dumps({"query": "", "final_answer": 1})]
    path = write_lines(tmp_path / "prompts.jsonl", rows)
    with pytest.raises(DatasetError, match="data.val_path: .*prompts.jsonl: line 3: empty or non-text query"):
        PromptPoolDataModule(tokenizer_path=str(model_dir), val_path=str(path)).setup("validate")
    path = write_lines(tmp_path / "prompts.jsonl", rows[:2] + [json.dumps({"query": "Q?", "final_answer": 2.5})])
    with pytest.raises(DatasetError) as err:
        PromptPoolDataModule(tokenizer_path=str(model_dir), val_path=str(path)).setup("validate")
    assert f"2 final_answer value(s) are not igsm answers: {path}: line 2: 'twelve'; line 3: 2.5" in str(err.value)
    assert 'must be an integer (or integer text such as "24")' in str(err.value)


def test_row_errors_name_the_data_file_and_the_line_a_malformed_line_would_get(tmp_path, model_dir):
    """A dataset directory: every error names DIR/data.jsonl and 1-based file lines, blank lines counted."""
    directory = tmp_path / "ds"
    directory.mkdir()
    data = directory / "data.jsonl"
    lines = [GOOD, "", GOOD, "", "", GOOD, "", GOOD, json.dumps({"query": "Q?", "response": "", "final_answer": 1})]
    write_lines(data, lines)  # the bad response is on file line 9 (the 6th row)
    with pytest.raises(DatasetError) as err:
        SFTDataModule(train_path=str(directory), tokenizer_path=str(model_dir)).setup("fit")
    assert str(err.value).startswith(f"data.train_path: 1 value(s) are not non-empty text: {data}: line 9: ")
    write_lines(data, [*lines[:8], "{not json"])  # a malformed line 9: the reader names it the same way
    with pytest.raises(DatasetError, match=f"^data.train_path: {data}, line 9: not valid JSON"):
        SFTDataModule(train_path=str(directory), tokenizer_path=str(model_dir)).setup("fit")
    write_lines(data, [*lines[:8], json.dumps({"query": "Q?", "final_answer": "many"})])
    with pytest.raises(DatasetError, match=f"^data.train_path: 1 final_answer .*: {data}: line 9: 'many'"):
        PromptPoolDataModule(tokenizer_path=str(model_dir), train_path=str(directory)).setup("fit")


def test_row_errors_in_parquet_name_1_based_rows(tmp_path, model_dir):
    rows = [json.loads(GOOD), {**json.loads(GOOD), "response": ""}, {**json.loads(GOOD), "query": "  "}]
    write_dataset(tmp_path / "pq", rows, config={}, fmt="parquet")
    with pytest.raises(DatasetError) as err:
        SFTDataModule(train_path=str(tmp_path / "pq"), tokenizer_path=str(model_dir)).setup("fit")
    data = tmp_path / "pq" / "data.parquet"
    expected = f"2 value(s) are not non-empty text: {data}: row 2: empty or non-text response; row 3: empty or non-text"
    assert expected in str(err.value)


def test_invalid_arguments_are_reported_together(model_dir):
    with pytest.raises(ValueError) as err:
        SFTDataModule(train_path="x", tokenizer_path=str(model_dir), batch_size=0, val_fraction=0.5, val_path="y")
    assert "data.batch_size=0" in str(err.value) and "data.val_fraction and data.val_path" in str(err.value)
    with pytest.raises(ValueError, match="data.tokenizer_path: .*does not exist"):
        SFTDataModule(train_path="x", tokenizer_path="/nowhere").setup("fit")
    with pytest.raises(ValueError, match="all null"):
        PromptPoolDataModule(tokenizer_path=str(model_dir))


def test_tokenizer_without_pad_token_pads_with_eos(tmp_path, model_dir, sft_dir, tokenizer):
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    stripped = load_tokenizer(bare)
    stripped.pad_token = None
    stripped.save_pretrained(bare)
    data = sft_module(bare, sft_dir, limit=8)
    data.setup("fit")
    assert data.pad_id == tokenizer.eos_token_id
    batch = next(iter(data.train_dataloader()))
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.eos_token_id).all()
