"""Prompt sets: the first rows of a dataset (query, final_answer) rendered and tokenized as RL prompts.

What evaluation, the probes of the analysis and the callbacks read; a `PromptSet` is plain lists, so any rollout
engine can sample it. Imports transformers (through `encoding`) but no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge_pl.data.encoding import encode_prompts
from bridge_pl.data.io import dataset_task, read_dataset
from bridge_pl.task.base import Task, get_task

__all__ = ["PromptSet", "load_prompt_set"]


@dataclass
class PromptSet:
    """Fixed prompts with their ground truth, in file order."""

    path: str
    """Where they were read from."""
    prompt_ids: list[list[int]]
    """Token ids of each rendered prompt (chat template + "<think>", no special tokens added)."""
    ground_truth: list[str]
    """str(final_answer) of each prompt: what the reward compares the first \\boxed{} with."""
    num_ops: list[int]
    """Operation count of each problem (-1 where the data has none)."""
    index: list[int] | None = None
    """Position of each prompt in its file (default: 0, 1, ...)."""
    task: Task | None = None
    """The task that judges the answers (`Task.is_correct`; default iGSM)."""

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = list(range(len(self.prompt_ids)))
        self.task = get_task(self.task)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @classmethod
    def from_batch(
        cls, batch: dict[str, Any], prompt_ids: list[list[int]], path: str = "", task: Task | None = None
    ) -> PromptSet:
        """The prompts of a `PromptPoolDataModule` batch (its unpadded `prompt_ids` given), judged by `task`."""
        columns = list(batch["ground_truth"]), list(batch["num_ops"]), list(batch["index"])
        return cls(path, prompt_ids, *columns, task=task)

    def subset(self, keep: list[int]) -> PromptSet:
        """The prompts at positions `keep` (in that order), with their file positions."""
        pick = lambda values: [values[i] for i in keep]  # noqa: E731
        return PromptSet(self.path, pick(self.prompt_ids), pick(self.ground_truth), pick(self.num_ops),
                         pick(self.index), self.task)  # fmt: skip


def load_prompt_set(path: str, tokenizer: Any, limit: int | None = None, task: str | Task | None = None) -> PromptSet:
    """The first `limit` prompts (all with None) of a dataset with query and final_answer, tokenized as RL prompts.

    The task is the one the dataset's config names; `task`, when given, must agree (`dataset_task`).
    """
    judge = dataset_task(path, task)
    rows = read_dataset(path, required=("query", "final_answer"))[:limit]
    if not rows:
        raise ValueError(f"prompt set {path!r} holds no rows")
    examples = encode_prompts(tokenizer, rows)
    return PromptSet(
        path=str(path),
        prompt_ids=[e["input_ids"] for e in examples],
        ground_truth=[e["ground_truth"] for e in examples],
        num_ops=[e["num_ops"] for e in examples],
        task=judge,
    )
