"""Two simulated nodes of one CPU process each (gloo), through the shipped launch scripts: a tiny GRPO fit under
FSDP2 (configs/trainer/multinode.yaml) for 2 steps.

* torchrun: `scripts/launch_multinode.sh` started twice, NODE_RANK 0 and 1 (TorchElasticEnvironment);
* SLURM: `scripts/launch_multinode.sbatch` with a stand-in `srun` that starts one task per node with the variables
  srun sets (SLURMEnvironment). No SLURM is needed.

Both ranks must have taken part: each reports its node rank and a world size of 2 (a probe callback that only
observes), trained on its own prompts (the distributed sampler's disjoint halves), holds and changed its own shard of
every weight (the two shards add up to the model), and rank 0 alone writes the Hugging Face export, which moved.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bridge_pl.cli import main as bridge_main
from bridge_pl.models.model_io import load_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SAVED = "saved the Hugging Face model to"
TIMEOUT_S = 420

PROBE = '''
import json
import os
from pathlib import Path

import lightning as L
import torch


def _local(param):
    return (param.to_local() if hasattr(param, "to_local") else param).detach()


class RankProbe(L.Callback):
    """Writes what this rank saw and did to $MULTINODE_PROBE_DIR/rank<global rank>.json (test only)."""

    def on_train_start(self, trainer, pl_module):
        self.start = {name: _local(p).clone() for name, p in pl_module.named_parameters()}
        self.indices = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.indices += [int(i) for i in batch["index"]]

    def on_train_end(self, trainer, pl_module):
        for module in pl_module.modules():  # FSDP2 leaves the root unsharded after a forward (validation ran last)
            if hasattr(module, "reshard"):
                module.reshard()
        params = {name: _local(p) for name, p in pl_module.named_parameters()}
        record = {
            "global_rank": trainer.global_rank,
            "node_rank": trainer.node_rank,
            "local_rank": trainer.local_rank,
            "world_size": trainer.world_size,
            "process_group_size": torch.distributed.get_world_size(),
            "cluster": type(trainer.strategy.cluster_environment).__name__,
            "indices": self.indices,
            "local_numel": sum(p.numel() for p in params.values()),
            "unchanged": [name for name, p in params.items() if torch.equal(self.start[name], p)],
        }
        out = Path(os.environ["MULTINODE_PROBE_DIR"]) / f"rank{trainer.global_rank}.json"
        out.write_text(json.dumps(record))
'''

FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for srun (test only): one task per node, each with the variables srun gives its tasks.
set -u
while [[ "$1" == --* ]]; do shift; done  # srun's own options
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_NODEID=$node SLURM_NTASKS=$SLURM_NNODES "$@" \\
    > "$SRUN_LOG_DIR/task$node.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prompts")
    for split in ("tiny_rl_train", "tiny_rl_val"):
        argv = ["data", "generate", "--split", split, "--size", "8", "--out", str(out / split), "--quiet"]
        assert bridge_main(argv) == 0
    return out


def fit_args(tmp_path: Path, model_dir: Path, prompts: Path) -> list[str]:
    """Tiny GRPO on the CPU: 2 steps of 2 prompts x 2 rollouts per rank, the probe appended to the callbacks."""
    return [
        "--config", str(CONFIGS / "grpo" / "tiny.yaml"),
        "--config", str(CONFIGS / "trainer" / "multinode.yaml"),
        "--trainer.accelerator", "cpu",
        "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.callbacks+=multinode_probe.RankProbe",
        "--model.init_args.model_path", str(model_dir),
        "--model.init_args.hf_output_dir", "null",  # the model lands in the run directory
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.sampling.max_new_tokens", "8",
        "--data.init_args.train_path", str(prompts / "tiny_rl_train"),
        "--data.init_args.val_path", str(prompts / "tiny_rl_val"),
        "--data.init_args.batch_size", "2",
    ]  # fmt: skip


def base_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "multinode_probe.py").write_text(PROBE)
    (tmp_path / "probe").mkdir()
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "PYTHON": sys.executable,
        "MULTINODE_PROBE_DIR": str(tmp_path / "probe"),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }


def run_all(
    commands: list[tuple[list[str], dict[str, str], Path]], cwd: Path, more_logs: tuple[Path, ...] = ()
) -> None:
    """Start every (argv, env, log file) at once and wait for all; on a failure or a hang, fail showing every log."""
    procs = []
    for argv, env, log in commands:
        with log.open("w") as out:
            procs.append(  # a session of its own: a hang is ended with every process it started
                subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
    deadline, timed_out = time.monotonic() + TIMEOUT_S, False
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers
                proc.wait()
    codes = [proc.returncode for proc in procs]
    if timed_out or any(codes):
        logs = [log for _, _, log in commands] + [log for log in more_logs if log.exists()]
        report = "\n".join(f"===== {log.name} =====\n{log.read_text(errors='replace')[-4000:]}" for log in logs)
        what = f"timed out after {TIMEOUT_S} s" if timed_out else f"exit codes {codes}"
        pytest.fail(f"multi-node run {what}\n{report}")


def assert_both_ranks_trained(tmp_path: Path, model_dir: Path, output: str, cluster: str) -> None:
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / "probe").glob("rank*.json")),
                     key=lambda r: r["global_rank"])  # fmt: skip
    assert [(r["global_rank"], r["node_rank"], r["local_rank"]) for r in records] == [(0, 0, 0), (1, 1, 0)], records
    assert all(r["world_size"] == r["process_group_size"] == 2 and r["cluster"] == cluster for r in records), records
    assert records[0]["indices"] and records[1]["indices"]
    assert not set(records[0]["indices"]) & set(records[1]["indices"])  # each node trained on its own prompts
    assert all(not r["unchanged"] for r in records), [r["unchanged"] for r in records]  # every local shard moved
    initial = load_model(model_dir).state_dict()
    (hf_dir,) = (tmp_path / "runs").glob("*/version_*/hf_model")
    trained = load_model(hf_dir).state_dict()
    parameters = dict(load_model(model_dir).named_parameters())
    assert records[0]["local_numel"] + records[1]["local_numel"] == sum(p.numel() for p in parameters.values())
    assert all(not torch.equal(initial[name], trained[name]) for name in parameters)
    assert output.count(SAVED) == 1, output[-3000:]  # rank 0 writes the export, once


def test_two_nodes_with_torchrun(tmp_path, model_dir, prompts):
    env = {**base_env(tmp_path), "NNODES": "2", "GPUS_PER_NODE": "1"}
    argv = ["bash", str(ROOT / "scripts" / "launch_multinode.sh"), *fit_args(tmp_path, model_dir, prompts)]
    commands = [(argv, {**env, "NODE_RANK": str(rank)}, tmp_path / f"node{rank}.log") for rank in (0, 1)]
    run_all(commands, cwd=tmp_path)
    logs = [log.read_text(errors="replace") for _, _, log in commands]
    assert "Starting with 2 processes" in logs[0]
    assert_both_ranks_trained(tmp_path, model_dir, "".join(logs), "TorchElasticEnvironment")


def test_two_nodes_with_slurm(tmp_path, model_dir, prompts):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {
        **base_env(tmp_path),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SRUN_LOG_DIR": str(tmp_path),
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "bridge-fit",
        "SLURM_SUBMIT_DIR": str(tmp_path),
    }
    argv = ["bash", str(ROOT / "scripts" / "launch_multinode.sbatch"), *fit_args(tmp_path, model_dir, prompts)]
    task_logs = tuple(tmp_path / f"task{rank}.log" for rank in (0, 1))
    run_all([(argv, env, tmp_path / "sbatch.log")], cwd=tmp_path, more_logs=task_logs)
    logs = [log.read_text(errors="replace") for log in task_logs]
    assert "Starting with 2 processes" in logs[0]
    assert_both_ranks_trained(tmp_path, model_dir, "".join(logs), "SLURMEnvironment")
