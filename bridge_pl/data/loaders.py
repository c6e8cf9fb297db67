"""Loaders of the DataModules: seeded length-grouped batch plans per data-parallel rank, and loaders whose place
in the epoch is saved in Lightning checkpoints (a resumed run goes on mid-epoch, also with loader workers).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bridge_pl.data.collate import balance_batches, length_buckets

__all__ = ["BatchPlanSampler", "EpochSampler", "ExampleList", "ResumableLoader", "data_parallel_replica"]

MEGA_BATCH = 50  # batches per length-sorted group of the bucketed plan


class ExampleList(Dataset):
    """A list of examples that also answers a list of indices with the list of examples (one batch per call)."""

    def __init__(self, examples: Sequence[Any]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int | list[int]) -> Any:
        if isinstance(index, list):
            return [self.examples[i] for i in index]
        return self.examples[index]


class BatchPlanSampler(DistributedSampler):
    """This rank's batches (lists of indices) of a seeded length-grouped plan that changes every epoch.

    The plan of epoch e is ``length_buckets(lengths, batch_size, mega_batch=..., seed=seed + e)``, balanced so
    that every rank gets the same number of batches (`balance_batches`); rank r takes batches r, r + R, ....
    Every example appears once per epoch over all ranks. It is a `DistributedSampler`, so Lightning does not
    replace it under DDP, and calls `set_epoch` on it at each epoch. Use it as ``ResumableLoader(ExampleList(...),
    sampler=..., batch_size=None, collate_fn=...)``: each item it yields is a whole batch. ``start`` skips that
    many of this rank's batches (`ResumableLoader` sets it while a resumed epoch starts).

    Args:
        lengths: Token count of every example.
        batch_size: Examples per batch (some batches are smaller: the last one, and those split for balance).
        mega_batch: Batches per length-sorted group (1: random batches, no length grouping).
        seed: Seed of the plan.
        num_replicas: Data-parallel ranks.
        rank: This rank.
        epoch: Epoch to start with.
        multiple_of: Keep a multiple of this many batches per rank and epoch (the rest of the shuffled plan is
            left out, a different part every epoch): whole optimizer steps under gradient accumulation.
    """

    start = 0

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        mega_batch: int = MEGA_BATCH,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
        multiple_of: int = 1,
    ) -> None:
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega_batch = mega_batch
        self.epoch = epoch
        per_rank = len(self.plan(epoch)) // num_replicas  # the same in every epoch
        self.num_batches = per_rank - per_rank % multiple_of
        if multiple_of > 1 and self.num_batches == 0:
            raise ValueError(
                f"{per_rank} batch(es) per rank is fewer than one optimizer step of {multiple_of}: use more data, "
                "a smaller batch_size or accumulate_grad_batches, or drop_last: false"
            )

    def plan(self, epoch: int) -> list[list[int]]:
        """The batches of all ranks in epoch `epoch`."""
        batches = length_buckets(self.lengths, self.batch_size, mega_batch=self.mega_batch, seed=self.seed + epoch)
        return balance_batches(batches, self.num_replicas)

    def __iter__(self):
        return iter(self.plan(self.epoch)[self.rank :: self.num_replicas][self.start : self.num_batches])

    def __len__(self) -> int:
        return self.num_batches  # the whole epoch's, also when it starts part-way: Lightning counts on it


class ResumableLoader(DataLoader):
    """A DataLoader whose place in the epoch is saved in Lightning checkpoints, so a resumed run goes on mid-epoch.

    Lightning stores ``state_dict()`` of stateful loaders in the checkpoint and hands it back through
    ``load_state_dict`` before the resumed epoch iterates: the batches already trained on are then skipped,
    and the run sees the batches an uninterrupted run would have seen. The next epochs are whole.

    The sampler must have ``epoch`` (Lightning's `set_epoch`) and ``start``: how many of its items an
    iteration skips (e.g. `BatchPlanSampler`, whose items are whole batches with ``batch_size=None``). Batches
    are counted as this loader hands them to the training loop, in the main process, so loader workers fetching
    ahead (``num_workers > 0``) never count as trained.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.sampler, "start") or not hasattr(self.sampler, "epoch"):
            raise TypeError(f"ResumableLoader needs a sampler with `epoch` and `start`, not {type(self.sampler)}")
        self._batches = 0  # batches handed out in epoch `_epoch`
        self._epoch: int | None = None
        self._resume: dict[str, int] | None = None

    def __iter__(self):
        # A generator: the skip is decided at the first batch, after Lightning's load_state_dict and set_epoch.
        done = 0
        if self._resume is not None and self._resume["epoch"] == self.sampler.epoch:
            done = self._resume["batches"]
        self._resume = None
        self._batches, self._epoch = done, self.sampler.epoch
        self.sampler.start = done * (self.batch_size or 1)  # batch_size None: each sampler item is a batch
        try:
            for batch in super().__iter__():
                # With workers torch calls iter() on the sampler twice, both times before the first batch is
                # out: the skip may end only now.
                self.sampler.start = 0
                self._batches += 1
                yield batch
        finally:
            self.sampler.start = 0

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches were handed out (a pending resume if none was yet)."""
        if self._resume is not None:
            return dict(self._resume)
        # A checkpoint taken after set_epoch but before the new epoch's first batch: none of it is done yet.
        batches = self._batches if self._epoch == self.sampler.epoch else 0
        return {"epoch": self.sampler.epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume the saved epoch after its saved batches (at the next iteration)."""
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


def data_parallel_replica(trainer: Any) -> tuple[int, int]:
    """(rank, number of ranks) of data parallelism under `trainer` ((0, 1) without one or on one device)."""
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if not kwargs:
        return 0, 1
    return int(kwargs.get("rank", 0)), int(kwargs.get("num_replicas", 1))


class EpochSampler(DistributedSampler):
    """A DistributedSampler that can start an epoch part-way (``start``: indices of this rank to skip).

    `ResumableLoader` sets ``start`` while a resumed epoch starts.
    """

    start = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)
