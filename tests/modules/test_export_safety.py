"""Exports never replace what a run was not asked to: the rules of `export_dir_errors`, the atomic save, kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bridge_pl.models.model_io import EXPORT_MARKER
from bridge_pl.modules.policy import export_dir_errors

ROOT = Path(__file__).resolve().parents[2]
KEY = "model.init_args"


def errors(out, run_id=None, overwrite=False, **inputs):
    """`export_dir_errors` with the recipe's key; inputs default to none."""
    return export_dir_errors(out, inputs=inputs, run_id=run_id, overwrite=overwrite, key=KEY)


def exported(directory: Path, run_id: str) -> Path:
    """A directory that looks like run `run_id`'s export."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text("{}")
    (directory / EXPORT_MARKER).write_text(json.dumps({"run_id": run_id, "step": 3}))
    return directory


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_missing_or_empty_directories_may_be_written(tmp_path):
    assert errors(tmp_path / "new" / "hf") == []
    (tmp_path / "empty").mkdir()
    assert errors(tmp_path / "empty") == []


def test_the_base_model_is_refused_unless_overwrite_and_its_parent_always(tmp_path, model_dir):
    (issue,) = errors(model_dir, model_path=str(model_dir))
    assert "is model.init_args.model_path" in issue and "overwrite_output_dir: true" in issue
    assert errors(model_dir, overwrite=True, model_path=str(model_dir)) == []
    (issue,) = errors(model_dir.parent, overwrite=True, model_path=str(model_dir))
    assert "would delete that model" in issue and "overwrite_output_dir" not in issue


def test_a_dataset_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.jsonl").write_text('{"query": "q", "response": "r"}\n')
    (issue,) = errors(data)
    assert "already holds a dataset" in issue and "choose another model.init_args.hf_output_dir" in issue
    assert errors(data, overwrite=True) == []


def test_another_runs_model_and_a_foreign_model_are_refused_the_same_runs_export_is_not(tmp_path):
    out = exported(tmp_path / "hf", "aaaa1111")
    (issue,) = errors(out, run_id="bbbb2222")
    assert "another run (run id aaaa1111" in issue
    assert errors(out, run_id=None) != []  # a fresh run owns nothing yet
    assert errors(out, run_id="aaaa1111") == []  # the same run, resumed
    assert errors(out, run_id="bbbb2222", overwrite=True) == []
    (out / EXPORT_MARKER).unlink()
    (issue,) = errors(out, run_id="aaaa1111")
    assert "a model that no bridge-pl run exported" in issue


def test_own_snapshots_may_stay_other_entries_are_listed(tmp_path):
    out = tmp_path / "hf"
    exported(out / "step_2", "run1")
    assert errors(out, run_id="run1") == []
    (out / "notes.txt").write_text("mine")
    (issue,) = errors(out, run_id="run1")
    assert "1 other entries (notes.txt)" in issue
    assert errors(tmp_path / "hf" / "notes.txt") != []  # a file is not a directory to save into


def test_an_unwritable_location_is_refused_even_with_overwrite(read_only_dir):
    (issue,) = errors(read_only_dir / "hf", overwrite=True)
    assert f"{read_only_dir} is not writable" in issue


# ---------------------------------------------------------------------------------------------- atomic save
def test_save_replaces_files_keeps_snapshot_folders_and_leaves_no_temporary(tmp_path, model_dir):
    from bridge_pl.models.model_io import load_model, load_tokenizer, save_pretrained

    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    out = tmp_path / "hf"
    save_pretrained(model, tokenizer, out / "step_1", marker={"run_id": "r", "step": 1})
    (out / "stale.bin").write_text("from before")
    (out / "eval").mkdir()  # e.g. the report of an earlier model: it would describe another model
    save_pretrained(model, tokenizer, out, marker={"run_id": "r", "step": 2})
    assert json.loads((out / EXPORT_MARKER).read_text())["step"] == 2
    assert (out / "step_1" / "model.safetensors").is_file()  # the snapshot moved into the new folder
    assert not (out / "stale.bin").exists() and not (out / "eval").exists()  # replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no .partial / .old folder left


KILLED_SAVE = """
import os, signal, sys
from transformers import PreTrainedTokenizerBase
from bridge_pl.models.model_io import load_model, load_tokenizer, save_pretrained

model_dir, out = sys.argv[1], sys.argv[2]
model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)

def killed(self, *args, **kwargs):  # the weights are on disk, the tokenizer is not: kill -9 now
    os.kill(os.getpid(), signal.SIGKILL)

PreTrainedTokenizerBase.save_pretrained = killed
save_pretrained(model, tokenizer, out, marker={"run_id": "second", "step": 9})
"""


def test_kill_during_an_export_leaves_no_export_that_looks_finished(tmp_path, model_dir):
    from bridge_pl.models.model_io import load_model, load_tokenizer, save_pretrained

    fresh, previous = tmp_path / "fresh", tmp_path / "previous"
    save_pretrained(load_model(model_dir), load_tokenizer(model_dir), previous, marker={"run_id": "first", "step": 1})
    before = digest(previous)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for out in (fresh, previous):
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(KILLED_SAVE), str(model_dir), str(out)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == -9, result.stderr
    assert not fresh.exists()  # nothing at the export path: a later load fails instead of reading half a model
    assert digest(previous) == before  # the earlier export is untouched, marker included
    partial = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert len(partial) == 2 and all(".partial-" in name for name in partial)  # hidden, never loaded as a model
