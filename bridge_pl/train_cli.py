"""The training command line: `bridge fit|validate|test|predict --config CONFIG.yaml` (LightningCLI).

    bridge fit --config configs/sft/tiny.yaml
    bridge fit --config configs/sft/tiny.yaml --config configs/trainer/ddp.yaml --trainer.devices 2
    bridge fit --config configs/sft/tiny.yaml --ckpt_path runs/sft_tiny/version_0/checkpoints/last.ckpt
    bridge fit --config configs/sft/tiny.yaml --print_config          # the resolved config, documented
    python -m bridge_pl.train_cli fit --config configs/sft/tiny.yaml  # the same without the `bridge` script

`model:` and `data:` are ``class_path``/``init_args`` blocks (any LightningModule / LightningDataModule), so
configs swap modules without code changes. The data module's ``tokenizer_path`` follows the model's
``model_path`` (linked), so a config names the model directory once. A bad key or value is reported by
jsonargparse before anything is loaded, and the resolved config is saved as ``config.yaml`` in the run's
log directory (``runs/<name>/version_<n>/``).
"""

from __future__ import annotations

import sys
import warnings

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

__all__ = ["BridgeCLI", "build_cli", "main"]


class BridgeCLI(LightningCLI):
    """LightningCLI with the links and error handling of bridge-pl's configs."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the tokenizer of the data module to the model directory (one place to set it)."""
        parser.link_arguments("model.init_args.model_path", "data.init_args.tokenizer_path", apply_on="parse")

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a ValueError here is a configuration error, reported without a traceback."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            print(f"bridge: error: {_root_cause(err)}", file=sys.stderr)
            raise SystemExit(2) from err


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
        0 on success (and for ``--help`` / ``--print_config``), 2 for a configuration error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # `bridge fit ...` passes its own argv while sys.argv also holds it: not the mistake Lightning warns about.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        build_cli(argv)
    except SystemExit as exit_:  # jsonargparse exits on --help, --print_config and bad configs
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
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
