"""Plain-text progress for runs whose output goes to a file or a pipe (CI, nohup), where a TQDM bar draws nothing.

`PlainProgressBar` is a Lightning `ProgressBar`, so a Trainer that has it among its callbacks uses it instead of
the TQDM bar (``CallbackConnector._configure_progress_bar`` adds a default bar only when the callbacks hold none).
It prints one ASCII line at a steady pace during fit, one after each validation and one when training ends::

    step 120/500 | loss 1.234 | tokens/s 5.1k | elapsed 2m10s | remaining ~6m52s
    val step 200/500 | val/loss 1.1 | val/ppl 3.004
    train done | step 500/500 | loss 0.9876 | elapsed 9m02s | 1.08s/step

`wants_plain_progress` says when to use it: when stderr (where tqdm draws) is not a terminal, or when
``BRIDGE_PROGRESS=plain``; ``BRIDGE_PROGRESS=bar`` keeps the bar.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from typing_extensions import override

__all__ = [
    "ENV_VAR",
    "PlainProgressBar",
    "estimate_remaining",
    "format_count",
    "format_duration",
    "format_final_line",
    "format_progress_line",
    "format_validation_line",
    "format_value",
    "select_train_metrics",
    "select_val_metrics",
    "wants_plain_progress",
]

ENV_VAR = "BRIDGE_PROGRESS"  # plain: always plain lines; bar: always Lightning's bar; unset or auto: by the terminal

# (label on the line, the logged names it may have, first found wins). SFT logs train/loss and
# train/tokens_per_sec; GRPO logs train/loss, train/reward (and `reward` for the bar) and perf/tokens_per_sec.
TRAIN_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("train/loss", "loss")),
    ("reward", ("train/reward", "reward")),
    ("tokens/s", ("train/tokens_per_sec", "perf/tokens_per_sec")),
)
COUNT_LABELS = frozenset({"tokens/s"})  # shown as 5.1k rather than 5123


# ------------------------------------------------------------------------------------------------ formatting
def format_duration(seconds: float) -> str:
    """A duration as ``45s``, ``2m10s`` or ``1h02m``; ``?`` for an unknown (negative, inf, nan) one.

    >>> [format_duration(s) for s in (0, 4.6, 59.4, 60, 130, 3599, 3725, 90000, -1, float("inf"))]
    ['0s', '5s', '59s', '1m00s', '2m10s', '59m59s', '1h02m', '25h00m', '?', '?']
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_count(value: float) -> str:
    """A rate or count in three significant digits with a k/M/G suffix.

    >>> [format_count(v) for v in (0, 12.34, 999, 5123, 51234, 1.5e6, 2e9, float("nan"))]
    ['0', '12.3', '999', '5.12k', '51.2k', '1.5M', '2G', 'nan']
    """
    if not math.isfinite(value):
        return str(value)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def format_value(value: float) -> str:
    """A metric value in four significant digits.

    >>> [format_value(v) for v in (1.23456, 0.45, 0.000123456, 1234.5, 3.0)]
    ['1.235', '0.45', '0.0001235', '1234', '3']
    """
    return f"{value:.4g}"


def select_train_metrics(metrics: Mapping[str, float]) -> dict[str, str]:
    """The short selection of a training line (loss, reward, tokens/s), formatted; absent ones are skipped.

    A name also matches with Lightning's ``_step`` suffix (logged with ``on_step`` and ``on_epoch``).

    >>> select_train_metrics({"train/loss_step": 1.23456, "train/tokens_per_sec": 5123.0, "train/lr": 0.001})
    {'loss': '1.235', 'tokens/s': '5.12k'}
    >>> select_train_metrics({"reward": 0.5, "perf/tokens_per_sec": 812.0})
    {'reward': '0.5', 'tokens/s': '812'}
    """
    fields = {}
    for label, names in TRAIN_METRICS:
        value = next((metrics[n] for name in names for n in (name, f"{name}_step") if n in metrics), None)
        if value is not None:
            fields[label] = format_count(value) if label in COUNT_LABELS else format_value(value)
    return fields


def select_val_metrics(metrics: Mapping[str, float]) -> dict[str, str]:
    """The ``val/*`` metrics in logging order, formatted, without the per-operation breakdowns.

    >>> select_val_metrics({"train/loss": 2.0, "val/accuracy": 0.45, "val/accuracy_op_2": 1.0, "val/loss": 1.1})
    {'val/accuracy': '0.45', 'val/loss': '1.1'}
    """
    return {k: format_value(v) for k, v in metrics.items() if k.startswith("val/") and "_op_" not in k}


def estimate_remaining(steps_done: int, steps_left: int, elapsed_s: float) -> float | None:
    """Seconds left at the mean step time so far; None before the first step.

    >>> estimate_remaining(steps_done=10, steps_left=30, elapsed_s=20.0)
    60.0
    >>> estimate_remaining(0, 30, 5.0) is None
    True
    """
    if steps_done <= 0:
        return None
    return elapsed_s / steps_done * max(steps_left, 0)


def _step_text(step: int, total: int | None) -> str:
    return f"step {step}/{total}" if total else f"step {step}"


def _join(head: str, fields: Mapping[str, str]) -> str:
    return " | ".join([head, *(f"{label} {text}" for label, text in fields.items())])


def format_progress_line(
    step: int, total: int | None, fields: Mapping[str, str], elapsed_s: float, remaining_s: float | None = None
) -> str:
    """One training line: step, the formatted metrics, elapsed time and (when known) the time remaining.

    >>> format_progress_line(120, 500, {"loss": "1.234", "tokens/s": "5.1k"}, 130.0, 410.0)
    'step 120/500 | loss 1.234 | tokens/s 5.1k | elapsed 2m10s | remaining ~6m50s'
    >>> format_progress_line(7, None, {}, 3.2)
    'step 7 | elapsed 3s'
    """
    line = _join(_step_text(step, total), fields) + f" | elapsed {format_duration(elapsed_s)}"
    if remaining_s is not None:
        line += f" | remaining ~{format_duration(remaining_s)}"
    return line


def format_validation_line(step: int, total: int | None, fields: Mapping[str, str]) -> str:
    """One validation line: the step it ran at and the formatted validation metrics.

    >>> format_validation_line(200, 500, {"val/loss": "1.1", "val/ppl": "3.004"})
    'val step 200/500 | val/loss 1.1 | val/ppl 3.004'
    """
    return _join("val " + _step_text(step, total), fields)


def format_final_line(
    step: int, total: int | None, fields: Mapping[str, str], elapsed_s: float, steps_done: int
) -> str:
    """The line at the end of training: the last metrics, total time and the mean time per step.

    >>> format_final_line(500, 500, {"loss": "0.9876"}, 542.0, 500)
    'train done | step 500/500 | loss 0.9876 | elapsed 9m02s | 1.08s/step'
    """
    line = _join(f"train done | {_step_text(step, total)}", fields) + f" | elapsed {format_duration(elapsed_s)}"
    if steps_done > 0:
        line += f" | {elapsed_s / steps_done:.3g}s/step"
    return line


def wants_plain_progress(stream: TextIO | None = None) -> bool:
    """True when plain lines should replace the bar: `stream` (default stderr) is no terminal, or the env says so.

    Raises:
        ValueError: ``BRIDGE_PROGRESS`` is set to something other than plain, bar or auto.
    """
    raw = os.environ.get(ENV_VAR, "")
    choice = raw.strip().lower()
    if choice == "plain":
        return True
    if choice == "bar":
        return False
    if choice not in ("", "auto"):
        raise ValueError(f"{ENV_VAR}={raw!r}: use plain (lines), bar (Lightning's bar) or auto (by the terminal)")
    stream = sys.stderr if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream: nothing draws there
        return True


# ------------------------------------------------------------------------------------------------ the callback
class PlainProgressBar(ProgressBar):
    """Print one plain ASCII line of training progress at a steady pace, instead of Lightning's TQDM bar.

    A line goes out after the first optimizer step of the fit, after the last one, every `every_n_steps` steps
    and whenever `interval_s` seconds have passed since the previous line (whichever comes first), as
    ``step 120/500 | loss 1.234 | tokens/s 5.1k | elapsed 2m10s | remaining ~6m50s``. The total is
    ``trainer.estimated_stepping_batches`` (``max_steps``, or the epochs' steps when ``max_steps`` is -1; left out
    when unknown); the metrics are the latest logged loss, reward and tokens/s that exist (SFT logs
    ``train/tokens_per_sec`` after callbacks have run, so it is the previous step's); the remaining time is the mean
    step time so far (validation included) times the steps left. After each validation (not the sanity check) it
    prints the ``val/*`` metrics, and when training ends a summary line. Lines go to stdout, flushed, on global rank
    zero only: they are the run's report, like the CLI's other results, and stdout stays the one stream to capture
    (``> train.log``) while warnings keep to stderr. It only observes.

    Args:
        interval_s: Seconds of wall clock between lines (0: no time-based lines).
        every_n_steps: Also print every n-th optimizer step (0: no step-based lines).
        clock: Seconds from a monotonic clock; tests pass a fake one.

    Raises:
        ValueError: A negative interval or step count.

    Example::

        trainer:
          callbacks:
            - class_path: callbacks.progress.PlainProgressBar
              init_args: {interval_s: 60, every_n_steps: 100}
    """

    def __init__(self, interval_s: float = 30.0, every_n_steps: int = 0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        counts = (("interval_s", interval_s), ("every_n_steps", every_n_steps))
        issues = [f"{name}={value}: must be >= 0" for name, value in counts if value < 0]
        if issues:
            raise ValueError("PlainProgressBar: " + "; ".join(issues))
        self.interval_s = interval_s
        self.every_n_steps = every_n_steps
        self.clock = clock
        self.lines: list[str] = []  # every line printed, for tests and for callers that want the record
        self._enabled = True
        self._total: int | None = None
        self._start_time = 0.0
        self._start_step = 0
        self._last_step = 0  # the step of the previous batch (under gradient accumulation batches repeat a step)
        self._last_print = 0.0  # clock time of the previous training line
        self._printed = False  # whether the fit's first training line is out

    @override
    def disable(self) -> None:
        """Stop printing (Lightning calls it on every rank but zero)."""
        self._enabled = False

    @override
    def enable(self) -> None:
        """Print again."""
        self._enabled = True

    @override
    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print a message of one's own, flushed, while enabled."""
        if self._enabled:
            print(*args, **kwargs, flush=True)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock and read the total number of steps."""
        self._total = _total_steps(trainer)
        self._start_time = self._last_print = self.clock()
        self._start_step = self._last_step = trainer.global_step
        self._printed = False

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Print a line when one is due for a new optimizer step."""
        step, now = trainer.global_step, self.clock()
        if step == self._last_step or not self._due(step, now):
            self._last_step = step
            return
        self._last_step, self._last_print, self._printed = step, now, True
        elapsed, done = now - self._start_time, step - self._start_step
        remaining = estimate_remaining(done, self._total - step, elapsed) if self._total else None
        self._emit(format_progress_line(step, self._total, select_train_metrics(_scalars(trainer)), elapsed, remaining))

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the validation metrics (not after the sanity check)."""
        if trainer.sanity_checking:
            return
        fields = select_val_metrics(_scalars(trainer))
        if fields:
            self._emit(format_validation_line(trainer.global_step, self._total, fields))

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the summary line."""
        step, elapsed = trainer.global_step, self.clock() - self._start_time
        fields = select_train_metrics(_scalars(trainer))
        self._emit(format_final_line(step, self._total, fields, elapsed, step - self._start_step))

    def _due(self, step: int, now: float) -> bool:
        """A line for a new step: the first of the fit, the last, the n-th, or the first after the interval."""
        first = not self._printed
        last = self._total is not None and step >= self._total
        nth = self.every_n_steps > 0 and step % self.every_n_steps == 0
        late = self.interval_s > 0 and now - self._last_print >= self.interval_s
        return first or last or nth or late

    def _emit(self, line: str) -> None:
        if not self._enabled or not self.trainer.is_global_zero:
            return
        line = line.replace("\r", " ").replace("\n", " ").encode("ascii", "replace").decode("ascii")
        self.lines.append(line)
        print(line, file=sys.stdout, flush=True)


def _total_steps(trainer: L.Trainer) -> int | None:
    """The optimizer steps the fit will take, None when unknown (infinite, an iterable dataset, or an error)."""
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # an accumulation schedule that changes between epochs: no total, still progress lines
        return None
    return int(total) if math.isfinite(total) and total > 0 else None


def _scalars(trainer: L.Trainer) -> dict[str, float]:
    """The logged one-number metrics (callback metrics, then the bar's), as floats, in logging order."""
    found: dict[str, float] = {}
    for name, value in {**trainer.callback_metrics, **trainer.progress_bar_metrics}.items():
        try:
            found[name] = float(value)  # a tensor of one element; a CUDA one syncs, once per printed line
        except (TypeError, ValueError, RuntimeError):
            continue
    return found
