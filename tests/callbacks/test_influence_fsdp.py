"""The influence estimator under FSDP2 on 2 CPU processes (gloo): it must equal the one-process value.

Each rank holds a shard of every parameter and of its gradient; `GradientSpace` sums the shards' inner products
over ranks (exact) or the shards' sketches (count sketch). Two tests: the analysis functions on fixed rollouts,
in 2 processes started by this file itself (``python test_influence_fsdp.py <model> <out>``), against the same
functions on the unsharded model; and the callback in a real 2-process GRPO run through the CLI (tiny.yaml +
fsdp2.yaml), against a one-process run of the same command: at step 0 both sample the same rollouts from the same
weights, so the logged influence must agree.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bridge_pl.analysis.influence import GradientSpace, select_parameters
from bridge_pl.analysis.probe import ProbeRollouts, measure_influence
from bridge_pl.data.io import write_dataset
from bridge_pl.data.prompt_sets import PromptSet
from bridge_pl.models.model_io import load_model
from bridge_pl.rollout import Completion

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# A rollout engine whose answers are fixed texts: prompt i gets RIGHT[i % 6] right answers of 8 (the number after
# "equals " in its question, boxed), so the probe's rollout accuracies and advantages are not all 0 on a random
# model. Written beside the runs and put on PYTHONPATH; the training and the callback around it are the real code.
SCRIPTED_ENGINE = """
from bridge_pl.rollout import Completion, RolloutEngine

RIGHT = (0, 1, 3, 4, 8, 6)
ANSWER = "\\nSo x = {v}.\\n</think>\\n<answer>\\nThe final answer is \\\\boxed{{{v}}}.\\n</answer>"


class Scripted(RolloutEngine):
    def _start(self, policy):
        pass

    def _push_weights(self, policy):
        pass

    def _generate(self, prompt_ids, n, sampling, seed):
        groups = []
        for i, ids in enumerate(prompt_ids):
            answer = self.tokenizer.decode(ids).split("equals ")[1][0]
            right = min(RIGHT[i % len(RIGHT)], n)
            texts = [ANSWER.format(v=answer)] * right + [ANSWER.format(v=(int(answer) + 1) % 10)] * (n - right)
            ids_ = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
            groups.append([Completion(x, self.tokenizer.decode(x, skip_special_tokens=True), "stop") for x in ids_])
        return groups
"""
PAD = 0
SPACES = (("all", None), ("last_layers", None), ("all", 4096))  # (parameter subset, sketch_dim)


def rollouts(patterns: list[list[bool]], seed: int) -> ProbeRollouts:
    """Prompts of random tokens with N completions of random tokens (lengths 3-9) and the given outcomes."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(10, 1500) for _ in range(rng.randint(4, 8))] for _ in patterns]
    groups = [
        [Completion([rng.randrange(10, 1500) for _ in range(rng.randint(3, 9))], "", "stop") for _ in pattern]
        for pattern in patterns
    ]
    return ProbeRollouts(PromptSet("test", prompts, ["0"] * len(patterns), [1] * len(patterns)), groups, patterns)


def measure_all(model: torch.nn.Module) -> list[dict]:
    """Influence terms and |T| of fixed rollouts in every space of SPACES (collective under FSDP2)."""
    train = rollouts([[True, False, True, False], [True, True, True, True], [False, True, False, False]], seed=1)
    target = rollouts([[True, True, False, False], [False, True, False, False]], seed=2)
    out = []
    for subset, sketch_dim in SPACES:
        space = GradientSpace(select_parameters(model, subset), sketch_dim=sketch_dim, seed=3)
        terms, vector = measure_influence(model, space, train, target, PAD, micro_batch_size=3)
        out.append({"terms": [t.__dict__ for t in terms], "target_norm": space.norm(vector), "sharded": space.sharded})
    return out


def worker(model_dir: str, out: str) -> None:
    """One rank: shard the model with FSDP2, mark every .grad, measure, check the marks; rank 0 writes the result."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from bridge_pl.modules.parallel import fully_shard_decoder

    dist.init_process_group("gloo")
    model = load_model(model_dir).eval()
    fully_shard_decoder(model, init_device_mesh("cpu", (dist.get_world_size(),)))
    marks = {name: torch.full_like(p, 7.0) for name, p in model.named_parameters()}
    for name, param in model.named_parameters():
        param.grad = marks[name]
    result = measure_all(model)
    kept = all(p.grad is marks[n] for n, p in model.named_parameters())
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({"spaces": result, "grads_kept": kept}))
    dist.barrier()  # no rank tears gloo down while the other is still in a collective
    dist.destroy_process_group()
    # Leave without interpreter teardown: there gloo's threads could outlive their owner and abort the process
    # ("terminate called without an active exception", about 1 run in 6) after the result was written.
    sys.stdout.flush()
    os._exit(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_terms_close(sharded: list[dict], single: list[dict], rel: float) -> None:
    for a, b in zip(sharded, single, strict=True):
        assert a["alpha"] == b["alpha"]
        for key in ("influence", "co_influence", "k_plus", "k_minus"):
            if b[key] is None:
                assert a[key] is None, key
            else:
                assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-7), (key, a, b)


def test_sharded_inner_products_equal_the_single_process_ones(model_dir, tmp_path):
    out = tmp_path / "sharded.json"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(model_dir), str(out)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    logs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), "\n".join(log[-3000:] for log in logs)
    sharded = json.loads(out.read_text())
    assert sharded["grads_kept"]  # the callback only observes: every .grad is as it was
    single = measure_all(load_model(model_dir).eval())
    for (subset, sketch_dim), a, b in zip(SPACES, sharded["spaces"], single, strict=True):
        assert a["sharded"] and not b["sharded"]
        assert a["target_norm"] == pytest.approx(b["target_norm"], rel=1e-4), (subset, sketch_dim)
        assert_terms_close(a["terms"], b["terms"], rel=1e-3)
    assert math.isclose(single[0]["terms"][1]["influence"], 0.0)  # alpha = 1 has no influence, sharded or not


def fit_step_zero(tmp_path: Path, model_dir: Path, prompts: Path, devices: int) -> dict:
    """tiny.yaml (its InfluenceCallback at step 0) for one step on `devices` CPU processes; the step-0 result."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "scripted_engine.py").write_text(SCRIPTED_ENGINE)
    argv = [
        sys.executable, "-m", "bridge_pl.train_cli", "fit",
        "--config", str(CONFIGS / "grpo" / "tiny.yaml"),
        *(["--config", str(CONFIGS / "trainer" / "fsdp2.yaml")] if devices > 1 else []),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", str(devices),
        "--trainer.max_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--model.init_args.model_path", str(model_dir),
        "--model.init_args.hf_output_dir", "null",
        "--model.init_args.engine.class_path", "scripted_engine.Scripted",
        "--model.init_args.rollout.num_generations", "2",
        "--data.init_args.train_path", str(prompts),
        "--data.init_args.val_path", str(prompts),
        "--data.init_args.batch_size", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "InfluenceCallback skipped" not in result.stdout + result.stderr
    (run_dir,) = (tmp_path / "runs").glob("*/version_*")
    assert (run_dir / "influence" / "over_training.png").is_file()
    return json.loads((run_dir / "influence" / "step_0.json").read_text())


def test_the_callback_under_fsdp2_logs_the_single_process_influence(model_dir, tmp_path):
    rows = [
        {"query": f"The number of each Bag's Pen equals {k}. How many Pen does each Bag have?", "final_answer": k,
         "num_ops": 1}
        for k in range(8)
    ]  # fmt: skip
    prompts = tmp_path / "prompts"
    write_dataset(prompts, rows, config={"note": "influence test prompts"})
    sharded = fit_step_zero(tmp_path / "fsdp2", model_dir, prompts, devices=2)
    single = fit_step_zero(tmp_path / "single", model_dir, prompts, devices=1)
    assert [p["alpha"] for p in single["prompts"]] == [0.0, 0.125, 0.375, 0.5, 1.0, 0.75, 0.0, 0.125]
    assert sum(p["influence"] != 0 for p in single["prompts"]) == 5  # the informative prompts
    assert_terms_close(sharded["prompts"], single["prompts"], rel=1e-3)
    for key, value in single["metrics"].items():
        if key.startswith("influence/"):
            assert sharded["metrics"][key] == pytest.approx(value, rel=1e-3, abs=1e-7), key


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
