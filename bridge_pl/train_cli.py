"""The training command line: `bridge fit|validate|test|predict --config CONFIG.yaml` (LightningCLI).

    bridge fit --config configs/sft/tiny.yaml
    bridge fit --config configs/sft/tiny.yaml --config configs/trainer/ddp.yaml --trainer.devices 2
    bridge fit --config configs/sft/tiny.yaml --ckpt_path runs/sft_tiny/version_0/checkpoints/last.ckpt
    bridge fit --config configs/sft/tiny.yaml --print_config          # the resolved config, documented
    python -m bridge_pl.train_cli fit --config configs/sft/tiny.yaml  # the same without the `bridge` script

`model:` and `data:` are ``class_path``/``init_args`` blocks (any LightningModule / LightningDataModule), so
configs swap modules without code changes. The data module's ``tokenizer_path`` follows the model's
``model_path`` (linked), so a config names the model directory once. A bad key or value is reported by
jsonargparse before anything is loaded, and bad data (a missing file, a malformed row) before the trainer
writes anything; the resolved config is saved as ``config.yaml`` in the run's log directory
(``runs/<name>/version_<n>/``). With ``--ckpt_path`` the run resumes with the config as given (LightningCLI
would replace ``model.*`` by the checkpoint's settings); each model setting that differs from the checkpoint's
is named in a warning.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn

from bridge_pl.data.io import unwritable_dir
from bridge_pl.modules.policy import RUN_ID_KEY, ExportRefused
from bridge_pl.task.base import TaskError
from bridge_pl.task.rewards import RewardError
from callbacks.progress import PlainProgressBar, wants_plain_progress

__all__ = ["BridgeCLI", "build_cli", "main"]

CKPT_KEYWORDS = ("last", "best", "hpc", "registry")  # --ckpt_path values Lightning resolves itself


class BridgeCLI(LightningCLI):
    """LightningCLI with the links and error handling of bridge-pl's configs."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data module's tokenizer to the model directory and its trust_remote_code (one place each)."""
        parser.link_arguments("model.init_args.model_path", "data.init_args.tokenizer_path", apply_on="parse")
        parser.link_arguments("model.init_args.trust_remote_code", "data.init_args.trust_remote_code", apply_on="parse")

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a ValueError here is a configuration error, reported without a traceback."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            _refuse(str(_root_cause(err)))
        except MisconfigurationException as err:  # the trainer's: an accelerator, device count or strategy
            _refuse(f"trainer: {err}{_device_hint(err)}")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> L.Trainer:
        """The trainer, with plain progress lines instead of the bar when stderr is not a terminal (CI, nohup, a pipe).

        `BRIDGE_PROGRESS` = plain / bar / auto chooses; a configured progress bar or ``enable_progress_bar: false``
        is left as it is.
        """
        try:
            plain = wants_plain_progress()
        except ValueError as err:
            _refuse(str(err))
        configured = [*(config.get("callbacks") or []), *callbacks]
        if (
            plain
            and config.get("enable_progress_bar") is not False
            and not any(isinstance(c, ProgressBar) for c in configured)
        ):
            callbacks = [*callbacks, PlainProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def before_fit(self) -> None:
        """Check where the run writes, then read and check the training data, before the trainer writes anything."""
        self._check_outputs()
        self._check_stopping()
        self._check_data("fit")

    def before_validate(self) -> None:
        """Read and check the validation data before the trainer creates run directories."""
        self._check_data("validate")

    def before_test(self) -> None:
        """Read and check the test data before the trainer creates run directories."""
        self._check_data("test")

    def _check_outputs(self) -> None:
        """Refuse a run whose log directory is not writable or whose export would replace what it may not."""
        issues = []
        for logger in self.trainer.loggers:
            root = getattr(logger, "root_dir", None) or getattr(logger, "save_dir", None)
            blocked = unwritable_dir(root) if root else None
            if blocked is not None:
                issues.append(f"trainer.logger: {blocked} is not writable (logs go to {root}); set "
                              "trainer.logger.init_args.save_dir to a writable folder")  # fmt: skip
        export_errors = getattr(self.model, "export_errors", None)
        if callable(export_errors):
            issues += export_errors(getattr(self, "_ckpt_run_id", None))
        if issues:
            _refuse("\n".join(issues))

    def _check_stopping(self) -> None:
        """Refuse an EarlyStopping that cannot stop the run when asked: with trainer.min_steps and no min_epochs,
        Lightning sets min_epochs=1 and ignores every stop before the first epoch ends (a GRPO run is one epoch)."""
        loop = self.trainer.fit_loop
        if loop.min_epochs is None and loop.min_steps is not None:
            if any(isinstance(c, EarlyStopping) for c in self.trainer.callbacks):
                _refuse(f"trainer.callbacks: EarlyStopping with trainer.min_steps={loop.min_steps} and no "
                        "trainer.min_epochs would not stop before the first epoch ends (Lightning turns min_steps into "
                        "min_epochs=1); add --trainer.min_epochs=0 to stop once min_steps are done, or set "
                        "trainer.min_epochs yourself")  # fmt: skip

    def _check_data(self, stage: str) -> None:
        """Set a bridge-pl data module up for `stage`; a data error exits with status 2, without a traceback.

        The bridge-pl data modules read, check and tokenize in ``setup`` without needing the trainer, and
        return at once when the trainer calls it again. Other data modules are left to the trainer (their
        ``setup`` may need it, or ``prepare_data`` first).
        """
        if self.datamodule is None or not type(self.datamodule).__module__.startswith("bridge_pl."):
            return
        try:
            self.datamodule.setup(stage)
        except (ValueError, FileNotFoundError) as err:
            print(f"bridge: error: {err}", file=sys.stderr)
            raise SystemExit(2) from err
        data_errors = getattr(self.model, "data_errors", None)  # the data's task and size, now known, against the model
        if callable(data_errors) and (issues := data_errors(self.datamodule)):
            _refuse("\n".join(issues))

    def _parse_ckpt_path(self) -> None:
        """Resume with the config as given, warning about each model setting that differs from the checkpoint's.

        LightningCLI's own version replaces ``model.*`` by the checkpoint's hyper-parameters, so what the
        command line changed (a new ``hf_output_dir``, say) would be dropped without a word.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in CKPT_KEYWORDS:
            return
        if not Path(ckpt_path).is_file():
            _refuse(
                f"--ckpt_path {ckpt_path}: no such checkpoint file; pass a .ckpt written by a run "
                "(runs/<name>/version_<n>/checkpoints/last.ckpt resumes its latest step)"
            )
        try:  # memory-mapped: only the hyper-parameters are read, not the weights and optimizer state
            checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True)
        except pickle.UnpicklingError as err:  # a checkpoint written outside the CLI may hold objects
            rank_zero_warn(f"--ckpt_path {ckpt_path}: its model settings could not be read ({err}); not compared")
            return
        except Exception as err:  # noqa: BLE001 (torch raises RuntimeError, EOFError, OSError for a cut file)
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
            _refuse(
                f"--ckpt_path {ckpt_path}: not a readable checkpoint, probably cut short when its run was killed while "
                f"saving ({reason}); resume from an earlier checkpoint of the same run"
            )
        self._ckpt_run_id = checkpoint.get(RUN_ID_KEY)
        saved = dict(checkpoint.get("hyper_parameters") or {})
        saved.pop("_instantiator", None)
        model = self.config[subcommand].get("model")
        if not saved or model is None:
            return
        current = model.as_dict() if hasattr(model, "as_dict") else dict(model)
        saved_class = saved.pop("_class_path", None)
        if saved_class and saved_class != current.get("class_path"):
            rank_zero_warn(
                f"--ckpt_path {ckpt_path}: the checkpoint was written by {saved_class}, the config builds "
                f"{current.get('class_path')}"
            )
        for key, here, there in _differences(current.get("init_args") or {}, saved):
            rank_zero_warn(
                f"--ckpt_path {ckpt_path}: model.init_args.{key} is {here!r} here but {there!r} in the "
                "checkpoint; resuming with the value given here"
            )


def _differences(given: dict[str, Any], saved: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, given value, saved value) wherever the saved settings differ from the given ones.

    Keys the checkpoint lacks (arguments added since it was written) are not differences.

    >>> _differences({"lora": None, "optimizer": {"lr": 1}}, {"lora": {"r": 8}, "optimizer": {"lr": 2}})
    [('lora', None, {'r': 8}), ('optimizer.lr', 1, 2)]
    """
    found = []
    for key, there in saved.items():
        if key not in given:
            continue
        here = given[key]
        if isinstance(here, dict) and isinstance(there, dict):
            found += _differences(here, there, f"{prefix}{key}.")
        elif _plain(here) != _plain(there):
            found.append((f"{prefix}{key}", here, there))
    return found


def _plain(value: Any) -> Any:
    """`value` with tuples as lists, so a parsed config and a checkpoint's hyper-parameters compare equal."""
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _refuse(message: str) -> None:
    """Report a refused run as `bridge: error:` lines on stderr and exit with status 2 (nothing was written)."""
    print("\n".join(f"bridge: error: {line}" for line in message.splitlines()), file=sys.stderr)
    raise SystemExit(2)


def _device_hint(err: Exception) -> str:
    """How to fix a trainer error about a missing GPU ('' for other errors)."""
    text = str(err).lower()
    if ("gpu" in text or "cuda" in text) and not torch.cuda.is_available():
        return " (this machine has no usable CUDA device: run with --trainer.accelerator cpu, or auto)"
    return ""


def _root_cause(err: BaseException) -> BaseException:
    """The innermost ValueError behind `err`: jsonargparse wraps a module's own message in union-type noise."""
    while isinstance(err.__cause__ or err.__context__, ValueError):
        err = err.__cause__ or err.__context__
    return err


def main(argv: list[str] | None = None) -> int:
    """Run the training CLI on `argv` (default: sys.argv[1:]); returns the exit status.

    Args:
        argv: Command line after the program name, starting with the subcommand (``["fit", "--config", ...]``).

    Returns:
        0 on success (and for ``--help`` / ``--print_config``), 2 for a configuration error, a refused output
        directory, data of another task, a reward that fails, or a diverged run (non-finite loss or gradient norm).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # `bridge fit ...` passes its own argv while sys.argv also holds it: not the mistake Lightning warns about.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        build_cli(argv)
    except SystemExit as exit_:  # jsonargparse exits on --help, --print_config and bad configs
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except (FloatingPointError, ExportRefused, TaskError, RewardError) as err:  # the message says it all
        print(f"bridge: error: {err}", file=sys.stderr)
        return 2
    return 0


def build_cli(argv: list[str], run: bool = True) -> BridgeCLI:
    """The CLI on `argv`: with `run`, argv starts with a subcommand that is executed; without, it only builds.

    `build_cli([...], run=False)` gives ``cli.model``, ``cli.datamodule`` and ``cli.trainer`` as a config makes
    them (what the tests use).
    """
    return BridgeCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # modules build their own optimizer from model.init_args.optimizer
        parser_kwargs={"prog": "bridge"},
        args=argv,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())
