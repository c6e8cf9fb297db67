"""The whole comparison of the paper from one YAML: data -> SFT -> evaluate -> probe -> GRPO -> evaluate -> report.

Optionally, once per seed (``pretrain:``): each seed's base model trained on a large plain corpus of the task
family (``base_models/seed_<s>_pretrained``), shared by every method. Then for every method (vanilla, BRIDGE,
PP-Aug, RC-Aug, behavior ablations) and seed::

    data      the method's SFT set (`bridge_pl.data.pipeline`, in-process); RL, validation and test sets are shared
    sft       bridge fit --config <sft config>        -> <out>/<method>/seed_<s>/sft_model
    sft_eval  bridge eval on the test sets             -> .../sft_eval/eval.json
    probe     rollout-accuracy histogram and per-step influence of the SFT model  -> .../probe.json
    grpo      bridge fit --config <grpo config>       -> .../rft_model
    rft_eval  bridge eval                              -> .../rft_eval/eval.json

A stage whose output exists is skipped, so an interrupted run continues where it stopped and ``report``
rebuilds the tables from what is on disk. Training stages run the real CLI in a subprocess (as a user would),
TensorBoard runs land in ``<out>/tb/<method>_seed<s>/{sft,grpo}``. The report is the paper's Table 1 layout
(SFT, RFT and gain per method, in- and out-of-distribution, mean +- std over seeds), the rollout-accuracy
histograms side by side, per-step influence by alpha bin, and the GRPO reward curves: ``report.md``,
``report.json``, PNG figures, and the same in TensorBoard under ``<out>/tb/report``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from bridge_pl.analysis.rejection import RejectionSettings
from bridge_pl.analysis.stats import paired_gain_difference
from bridge_pl.data.pipeline import GenerationPlan, generate_dataset, generation_plan
from bridge_pl.task.base import DEFAULT_TASK

__all__ = [
    "ExperimentConfig",
    "MethodConfig",
    "PretrainConfig",
    "RejectionConfig",
    "build_report",
    "load_config",
    "read_settings",
    "run_experiment",
]

STAGES = ("data", "sft", "sft_eval", "probe", "grpo", "rft_eval")
EVAL_BATCH_SIZE = 64  # bridge eval's and the probes' batch; stages recorded before it was a setting ran at it
TINY_SETS = {
    "rl_train": "tiny_rl_train",
    "rl_val": "tiny_rl_val",
    "test_id": "tiny_test_id",
    "test_ood": "tiny_test_ood",
}


@dataclass(frozen=True)
class RejectionConfig(RejectionSettings):
    """A rejection-sampling method: another method's SFT model fine-tuned on its own right answers.

    Per seed, the `source` method's SFT model is sampled `num_generations` times on the first `size` prompts of
    `prompts`; the right answers of prompts with alpha in [alpha_min, alpha_max] are kept
    (`bridge_pl.analysis.rejection`) and the source model is fine-tuned on them with the experiment's SFT config
    (and the method's `sft_args`). The paper discusses this baseline; its code has none.
    """

    source: str = "vanilla"
    """The method whose SFT model is sampled and fine-tuned (a method without rejection)."""
    prompts: str = "rl_train"
    """The prompts sampled: a key of `sets` (training prompts, never a test set)."""
    size: int = 1000
    """Prompts sampled (the first rows of `prompts`)."""


@dataclass(frozen=True)
class MethodConfig:
    """How one method writes its SFT answers (the settings of `bridge_pl.data.pipeline.generation_plan`)."""

    style: str = "plain"
    """Answer style: plain (vanilla CoT) or bridge."""
    behaviors: str | None = None
    """BRIDGE preset (vanilla, exploration, exploitation, full) with style bridge."""
    augment: str | None = None
    """pp-aug or rc-aug (several rows per problem)."""
    copies: int = 4
    """Rows per problem with augment."""
    behavior_overrides: dict[str, Any] = field(default_factory=dict)
    """`BehaviorConfig` fields set over the preset (e.g. {exploration: 0.2})."""
    generator_overrides: dict[str, Any] = field(default_factory=dict)
    """`GeneratorConfig` fields set over the split's (e.g. {max_op: 6})."""
    rejection: RejectionConfig | None = None
    """Instead of written answers: rejection-sampled ones of another method's SFT model (style and the rest unused)."""
    sft_args: tuple[str, ...] = ()
    """Extra `bridge fit` arguments of this method's SFT runs, after the experiment's `sft_args`."""

    def plan(self, split: str, task: str = DEFAULT_TASK) -> GenerationPlan:
        """The generation plan of this method's SFT set on a split preset of `task`."""
        return generation_plan(
            split=split, style=self.style, behaviors=self.behaviors, augmentation=self.augment,
            copies=self.copies if self.augment else None, behavior_overrides=self.behavior_overrides,
            generator_overrides=self.generator_overrides, task=task,
        )  # fmt: skip


@dataclass(frozen=True)
class ProbeConfig:
    """The pre-RL diagnostics of each SFT model (paper_spec §E.4)."""

    prompts: str = "rl_train"
    """Which prompt set: a key of `sets` (training prompts; the first `size` rows)."""
    targets: str = "rl_val"
    """Target prompts of the influence (a key of `sets`)."""
    size: int = 64
    """Probe prompts (and target prompts)."""
    num_generations: int = 16
    """Rollouts per prompt."""
    max_new_tokens: int = 320
    """Longest rollout."""
    influence: bool = True
    """Also measure the per-step influence (gradients of `parameters`)."""
    parameters: Literal["last_layers", "lm_head", "all"] = "last_layers"
    """Parameters whose gradients the influence uses (all: the whole model; it ranks prompts best, docs/influence.md,
    and costs little on a tiny model)."""
    target_alpha: tuple[float, float] | None = None
    """Screen the influence's targets: of the first `target_pool` target prompts, the first `size` whose rollout
    accuracy on the control method's SFT model of the seed lies in [low, high], on rollouts of their own. Every
    method is measured on this one set. Only prompts with 0 < alpha < 1 carry a target gradient, so unscreened
    targets at a low reward make the influence mostly noise (None: the first `size` target prompts)."""
    target_pool: int = 200
    """Target prompts screened (with `target_alpha`)."""
    screen_generations: int = 16
    """Rollouts per target prompt in the screening."""
    batch_size: int = EVAL_BATCH_SIZE
    """Rollouts per generate call of the probe and the screening (larger on a GPU)."""

    def screens(self) -> bool:
        """Whether the influence's targets are screened (`target_alpha` set and the influence measured)."""
        return self.influence and self.target_alpha is not None

    def settings(self) -> dict[str, Any]:
        """The fields that make a probe: the original ones, and each later one only where it takes effect and is
        not its default (so probes finished before it existed stay finished, and an unused key changes nothing)."""
        values = dataclasses.asdict(self)
        later = {"parameters": self.influence and self.parameters != "last_layers", "target_alpha": self.screens(),
                 "target_pool": self.screens(), "screen_generations": self.screens(),
                 "batch_size": self.batch_size != EVAL_BATCH_SIZE}  # fmt: skip
        return {k: v for k, v in values.items() if later.get(k, True)}


@dataclass(frozen=True)
class PretrainConfig:
    """An optional stage before SFT: each seed's base model trained on a large corpus of the task family.

    The paper's models are pretrained before their small SFT; a from-scratch model trained on a few thousand answers
    only has nothing for RL to elicit. With this stage the base model is competent at the task and SFT teaches the
    answer style (the behaviors), as in the paper. One pretrained model per seed is shared by every method.
    """

    split: str = "tiny_sft"
    """Split preset whose difficulty (operation counts, modulus) the corpus takes."""
    size: int = 40000
    """Problems in the corpus (many more than the SFT set)."""
    seed: int = 9100
    """Seed of the corpus's problem stream (distinct from every split preset's, so the problems are new ones)."""
    style: str = "plain"
    """Answer style of the corpus: plain (CoT) or no-cot."""
    config: str | None = None
    """`bridge fit` config of the stage (default: the experiment's sft_config)."""
    args: tuple[str, ...] = ()
    """Extra `bridge fit` arguments (e.g. a larger --trainer.max_steps)."""

    def plan(self, task: str = DEFAULT_TASK) -> GenerationPlan:
        """The generation plan of the corpus."""
        return generation_plan(split=self.split, size=self.size, seed=self.seed, style=self.style, task=task)


@dataclass(frozen=True)
class ExperimentConfig:
    """One comparison: methods x seeds on shared data, with the SFT and GRPO configs to run."""

    out_dir: str
    """Where everything is written."""
    sft_config: str
    """SFT config (e.g. configs/sft/tiny.yaml); train_path, model_path and outputs are set per run."""
    grpo_config: str
    """GRPO config (e.g. configs/grpo/tiny.yaml); data paths, model_path and outputs are set per run."""
    methods: dict[str, MethodConfig]
    """Method name -> how its SFT data is written."""
    task: str = DEFAULT_TASK
    """The task of every data set (`bridge_pl.task.base.get_task` name): igsm, dyval-arithmetic, dyval-logic."""
    sft_split: str = "tiny_sft"
    """Split preset of the SFT problems (the same problems for every method)."""
    sets: dict[str, str | dict[str, Any]] = field(default_factory=lambda: dict(TINY_SETS))
    """Shared prompt sets: name -> split preset, or {split, size, seed} (a preset with another size or seed: a test
    set of 2000 problems is {split: tiny_test_id, size: 2000}, whose first 500 are the preset's 500)."""
    test_sets: tuple[str, ...] = ("test_id", "test_ood")
    """Keys of `sets` evaluated before and after RL."""
    seeds: tuple[int, ...] = (0,)
    """Seeds: each gives its own base-model initialisation, SFT and GRPO run."""
    base_model: str | None = None
    """A local model directory to start from; None: a fresh `bridge model init` per seed."""
    base_preset: str = "llama-3m"
    """Tiny preset of the fresh base model."""
    sft_args: tuple[str, ...] = ()
    """Extra `bridge fit` arguments of every SFT run."""
    grpo_args: tuple[str, ...] = ()
    """Extra `bridge fit` arguments of every GRPO run."""
    eval_max_new_tokens: int = 320
    """Longest greedy answer in evaluation."""
    eval_engine: Literal["hf", "vllm"] = "hf"
    """Rollout engine of evaluation and probes (hf or vllm)."""
    eval_limit: int | None = None
    """Evaluate the first N problems of each test set only (None: all; quick runs)."""
    eval_batch_size: int = EVAL_BATCH_SIZE
    """Questions per generate call in evaluation (`bridge eval --batch-size`): larger on a GPU."""
    probe: ProbeConfig = ProbeConfig()
    """Pre-RL diagnostics."""
    control: str | None = None
    """The method every other is compared with, paired by seed and test problem (default: "vanilla" if there is
    one, else the first method)."""
    report_dir: str | None = None
    """Where report.md/json, the figures and the report's TensorBoard run go (default: out_dir). Two configs can share
    one out_dir, and with it every finished stage whose settings match (a baselines config reusing the main one's
    pretrained models and vanilla/BRIDGE runs), each writing its own report."""
    bootstrap_samples: int = 4000
    """Replicates of the two-level bootstrap (seeds, then problems) behind the report's confidence intervals."""
    pretrain: PretrainConfig | None = None
    """Train each seed's base model on a large corpus before SFT (None: SFT starts from the base model)."""

    def report_path(self) -> Path:
        """The folder of the report (report_dir, default out_dir)."""
        return Path(self.report_dir or self.out_dir)

    def control_method(self) -> str:
        """The method the paired comparison is against."""
        if self.control is not None:
            return self.control
        return "vanilla" if "vanilla" in self.methods else next(iter(self.methods))


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML; unknown keys and missing required ones are errors naming them."""
    raw = read_settings(path)
    try:
        if "methods" in raw and not isinstance(raw["methods"], dict):
            raise ValueError(f"methods must map each method's name to its settings, not {raw.get('methods')!r}")
        methods = {name: _method(name, spec or {}) for name, spec in raw.pop("methods").items()}
        probe = _build(ProbeConfig, raw.pop("probe", {}) or {}, "probe")
        pretrain = raw.pop("pretrain", None)
        pretrain = _build(PretrainConfig, pretrain, "pretrain") if pretrain is not None else None
        config = _build(ExperimentConfig, raw | {"methods": methods, "probe": probe, "pretrain": pretrain}, "")
    except KeyError as err:
        raise ValueError(f"{path}: missing key {err}") from err
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    unknown_sets = [s for s in (*config.test_sets, config.probe.prompts, config.probe.targets, "rl_train", "rl_val")
                    if s not in config.sets]  # fmt: skip
    if unknown_sets:
        raise ValueError(
            f"{path}: {', '.join(sorted(set(unknown_sets)))} must be keys of sets ({', '.join(config.sets)})"
        )
    if not config.methods:
        raise ValueError(f"{path}: methods is empty")
    if config.control is not None and config.control not in config.methods:
        raise ValueError(f"{path}: control={config.control!r} is not one of the methods ({', '.join(config.methods)})")
    if config.eval_batch_size < 1:
        raise ValueError(f"{path}: eval_batch_size={config.eval_batch_size}: at least 1")
    if config.eval_engine not in ("hf", "vllm"):
        raise ValueError(f"{path}: eval_engine={config.eval_engine!r}: choose hf or vllm")
    _check_probe(path, config.probe)
    for name, spec in config.sets.items():
        try:
            set_plan(spec, config.task)
        except ValueError as err:
            raise ValueError(f"{path}: sets.{name}: {err}") from err
    for name, method in config.methods.items():  # a bad style, preset or override fails now, not hours in
        try:
            method.plan(config.sft_split, config.task)
        except ValueError as err:
            raise ValueError(f"{path}: methods.{name}: {err}") from err
        if method.rejection is not None:
            _check_rejection(path, name, method.rejection, config)
    if config.pretrain is not None:
        try:
            config.pretrain.plan(config.task)
        except ValueError as err:
            raise ValueError(f"{path}: pretrain: {err}") from err
    return config


def read_settings(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An experiment YAML as a mapping, merged over the config(s) it ``extends`` (paths relative to the file).

    Mappings merge key by key, at every depth (a part config adds its methods to the main config's; a method,
    set or probe spec given again changes only the fields it names); any other value replaces the earlier one.
    Several parents merge in the order given (a later one wins with what it inherits too), then the file itself.
    Configs that must share finished stages thus share their settings.
    """
    path = Path(path)
    here = path.resolve()
    if here in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, here))
        raise ValueError(f"{path}: extends loops back to itself ({chain}); remove one extends")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an experiment config is a mapping of keys, not {type(raw).__name__}")
    parents = raw.pop("extends", None) or []
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ValueError(f"{path}: extends={parents!r}: give a config path or a list of them")
    merged: dict[str, Any] = {}
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise ValueError(f"{path}: extends {parent!r}: no file {parent_path} (paths are relative to the config)")
        merged = _merge(merged, read_settings(parent_path, (*_seen, here)))
    try:
        return _merge(merged, raw)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _merge(base: dict[str, Any], over: dict[str, Any], where: str = "") -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if value is None and isinstance(merged.get(key), dict):  # a key left empty would drop every inherited field
            raise ValueError(f"{where}{key} is empty but extends a mapping: give the keys to change, or remove it")
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value, f"{where}{key}.") if both else value
    return merged


def set_plan(spec: str | dict[str, Any], task: str = DEFAULT_TASK) -> GenerationPlan:
    """The generation plan of a shared set: a split preset name, or {split, size, seed} over the preset's."""
    if isinstance(spec, str):
        return generation_plan(split=spec, task=task)
    unknown = sorted(set(spec) - {"split", "size", "seed"})
    if unknown or "split" not in spec:
        raise ValueError(f"give a split preset or {{split, size, seed}}, not {dict(spec)!r}")
    return generation_plan(split=spec["split"], size=spec.get("size"), seed=spec.get("seed"), task=task)


def _method(name: str, spec: dict[str, Any]) -> MethodConfig:
    rejection = spec.get("rejection")
    if rejection is not None:
        spec = spec | {"rejection": _build(RejectionConfig, rejection, f"methods.{name}.rejection")}
    return _build(MethodConfig, spec, f"methods.{name}")


def _check_probe(path: str | Path, probe: ProbeConfig) -> None:
    problems = []
    if probe.batch_size < 1:
        problems.append(f"batch_size={probe.batch_size}: at least 1")
    if probe.parameters not in ("last_layers", "lm_head", "all"):
        problems.append(f"parameters={probe.parameters!r}: choose last_layers, lm_head or all")
    if probe.target_alpha is not None:
        window = probe.target_alpha
        if not isinstance(window, tuple) or len(window) != 2 or not 0 <= window[0] <= window[1] <= 1:
            problems.append(f"target_alpha={window!r}: give [low, high] with 0 <= low <= high <= 1")
        if probe.target_pool < probe.size:
            problems.append(f"target_pool={probe.target_pool}: screen at least size={probe.size} prompts")
        if probe.screen_generations < 2:
            problems.append(f"screen_generations={probe.screen_generations}: at least 2")
    if problems:
        raise ValueError(f"{path}: probe: " + "; ".join(problems))


def _check_rejection(path: str | Path, name: str, rejection: RejectionConfig, config: ExperimentConfig) -> None:
    where = f"{path}: methods.{name}.rejection"
    source = config.methods.get(rejection.source)
    if source is None or source.rejection is not None:
        raise ValueError(f"{where}: source={rejection.source!r} must be one of the written-answer methods "
                         f"({', '.join(m for m, c in config.methods.items() if c.rejection is None)})")  # fmt: skip
    if rejection.prompts not in config.sets or rejection.prompts in config.test_sets:
        raise ValueError(f"{where}: prompts={rejection.prompts!r} must be a training set of sets (e.g. rl_train), "
                         "never a test set")  # fmt: skip
    problems = rejection.errors() + ([f"size={rejection.size}: sample at least 1 prompt"] if rejection.size < 1 else [])
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))


def _build(cls, values: dict[str, Any], key: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{key}." if key else ""
        raise ValueError(f"unknown key(s) {', '.join(where + u for u in unknown)}; valid: {', '.join(sorted(names))}")
    tuples = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
    return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in values.items()})


# ------------------------------------------------------------------------------------------------ running
class Runner:
    """Runs the stages of one experiment, skipping those whose outputs exist."""

    def __init__(self, config: ExperimentConfig, log=print, force: bool = False) -> None:
        self.config, self.log, self.force = config, log, force
        self.out = Path(config.out_dir)
        self.fingerprints: dict[str, str] = {}  # output path -> fingerprint of the settings that made it
        self.older: dict[str, str] = {}  # config content digest or migrated fingerprint -> what older markers hold

    def run(self, methods: list[str] | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
        """Every stage of every (method, seed); returns the report."""
        self.shared_data()
        for seed in seeds if seeds is not None else self.config.seeds:
            base = self.pretrained_model(seed, self.base_model(seed))
            for method in methods or list(self.config.methods):
                self.run_method(method, seed, base)
        return build_report(self.config)

    # ---------------------------------------------------------------------------------------- stages
    def shared_data(self) -> None:
        """Write the RL, validation and test sets every method shares."""
        for name, spec in self.config.sets.items():
            self._generate(self.out / "data" / name, set_plan(spec, self.config.task))

    def base_model(self, seed: int) -> Path:
        """The starting model of a seed: the configured directory, or a fresh tiny model initialised with the seed."""
        if self.config.base_model:
            path = Path(self.config.base_model)
            self.fingerprints[str(path)] = _fingerprint({"base_model": str(path)})
            return path
        path = self.out / "base_models" / f"seed_{seed}"
        settings = {"preset": self.config.base_preset, "seed": seed}
        if not self._finished("base model", path, path / ".stage.json", settings):
            from bridge_pl.models.model_io import init_model_dir  # torch: only here

            init_model_dir(path, preset=self.config.base_preset, seed=seed)
            self._mark("base model", path / ".stage.json", settings)
        return path

    def pretrained_model(self, seed: int, base: Path) -> Path:
        """The seed's base model after the pretrain stage (`base` itself without one); shared by every method."""
        pretrain = self.config.pretrain
        if pretrain is None:
            return base
        data = self.out / "data" / "pretrain"
        self._generate(data, pretrain.plan(self.config.task))
        path = self.out / "base_models" / f"seed_{seed}_pretrained"
        fit_config = pretrain.config or self.config.sft_config
        settings = {"data": self._fp(data), "base_model": self._fp(base), "seed": seed,
                    "config": self._config_digest(fit_config), "args": list(pretrain.args)}  # fmt: skip
        if not self._finished("pretrain", path, path / ".stage.json", settings):
            self.log(f"[experiment] {time.strftime('%H:%M:%S')} seed {seed}: pretrain")
            self._fit([
                "--config", fit_config, "--seed_everything", str(seed),
                "--model.init_args.model_path", str(base), "--model.init_args.hf_output_dir", str(path),
                "--data.init_args.train_path", str(data), "--trainer.logger.init_args.save_dir", str(self.out / "tb"),
                "--trainer.logger.init_args.name", f"pretrain_seed{seed}", "--trainer.logger.init_args.version",
                "pretrain", *pretrain.args,
            ])  # fmt: skip
            self._mark("pretrain", path / ".stage.json", settings)
        return path

    def run_method(self, method: str, seed: int, base: Path) -> None:
        """Every stage of one (method, seed) run whose output is missing."""
        run = self.out / method / f"seed_{seed}"
        sft_model, rft_model = self.sft_model(method, seed, base), run / "rft_model"
        tb = self.out / "tb"
        self._evaluate(method, seed, "sft_eval", sft_model)
        self._probe(method, seed, sft_model, self._probe_targets(seed, base))
        grpo_settings = {
            "sft_model": self._fp(sft_model),
            "rl_train": self._fp(self.out / "data" / "rl_train"),
            "rl_val": self._fp(self.out / "data" / "rl_val"),
            "seed": seed,
            "grpo_config": self._config_digest(self.config.grpo_config),
            "grpo_args": list(self.config.grpo_args),
        }
        if not self._finished("grpo", rft_model, rft_model / ".stage.json", grpo_settings):
            self._stage(method, seed, "grpo")
            self._fit([
                "--config", self.config.grpo_config, "--seed_everything", str(seed),
                "--model.init_args.model_path", str(sft_model), "--model.init_args.hf_output_dir", str(rft_model),
                "--model.init_args.sampling_seed", str(seed),
                "--data.init_args.train_path", str(self.out / "data" / "rl_train"),
                "--data.init_args.val_path", str(self.out / "data" / "rl_val"),
                "--trainer.logger.init_args.save_dir", str(tb),
                "--trainer.logger.init_args.name", f"{method}_seed{seed}", "--trainer.logger.init_args.version", "grpo",
                *self.config.grpo_args,
            ])  # fmt: skip
            self._mark("grpo", rft_model / ".stage.json", grpo_settings)
        self._evaluate(method, seed, "rft_eval", rft_model)

    def sft_model(self, method: str, seed: int, base: Path) -> Path:
        """The method's SFT model of a seed (its data and SFT stages run if missing; a rejection method's source's
        SFT model first)."""
        spec = self.config.methods[method]
        sft_model = self.out / method / f"seed_{seed}" / "sft_model"
        if spec.rejection is None:
            start, data = base, self.out / "data" / f"sft_{method}"
            self._generate(data, spec.plan(self.config.sft_split, self.config.task))
        else:
            start = self.sft_model(spec.rejection.source, seed, base)
            data = self._rejection_data(method, seed, start)
        settings = {
            "data": self._fp(data),
            "base_model": self._fp(start),
            "seed": seed,
            "sft_config": self._config_digest(self.config.sft_config),
            "sft_args": [*self.config.sft_args, *spec.sft_args],
        }
        if not self._finished("sft", sft_model, sft_model / ".stage.json", settings):
            self._stage(method, seed, "sft")
            self._fit([
                "--config", self.config.sft_config, "--seed_everything", str(seed),
                "--model.init_args.model_path", str(start), "--model.init_args.hf_output_dir", str(sft_model),
                "--data.init_args.train_path", str(data), "--trainer.logger.init_args.save_dir", str(self.out / "tb"),
                "--trainer.logger.init_args.name", f"{method}_seed{seed}", "--trainer.logger.init_args.version", "sft",
                *self.config.sft_args, *spec.sft_args,
            ])  # fmt: skip
            self._mark("sft", sft_model / ".stage.json", settings)
        return sft_model

    def _rejection_data(self, method: str, seed: int, source_model: Path) -> Path:
        """The rejection-sampled SFT set of a seed: the source SFT model's right answers (`RejectionConfig`)."""
        rejection = self.config.methods[method].rejection
        data = self.out / method / f"seed_{seed}" / "sft_data"
        prompts = self.out / "data" / rejection.prompts
        settings = {"source_model": self._fp(source_model), "prompts": self._fp(prompts), "seed": seed,
                    "engine": self.config.eval_engine, "rejection": dataclasses.asdict(rejection)}  # fmt: skip
        if not self._finished("rejection sampling", data, data / ".stage.json", settings):
            self._stage(method, seed, "rejection sampling")
            from bridge_pl.analysis.rejection import rejection_sample  # torch: only here

            written = rejection_sample(
                str(source_model), str(prompts), data, size=rejection.size, settings=rejection, seed=seed,
                engine_kind=self.config.eval_engine, overwrite=True,
            )  # fmt: skip
            self.log(f"[experiment] {method} seed {seed}: kept {written['rows']} answers of "
                     f"{written['prompts_kept']}/{written['prompts_sampled']} prompts")  # fmt: skip
            self._mark("rejection sampling", data / ".stage.json", settings)
        return data

    def _evaluate(self, method: str, seed: int, stage: str, model: Path) -> None:
        out = self.out / method / f"seed_{seed}" / stage
        settings = {
            "model": self._fp(model),
            "engine": self.config.eval_engine,
            "limit": self.config.eval_limit,
            "max_new_tokens": self.config.eval_max_new_tokens,
            "test_sets": {name: self._fp(self.out / "data" / name) for name in self.config.test_sets},
        }
        if self.config.eval_batch_size != EVAL_BATCH_SIZE:  # greedy numbers can differ with the batch size
            settings["batch_size"] = self.config.eval_batch_size
        if self._finished(stage, out, out / ".stage.json", settings):
            return
        self._stage(method, seed, stage)
        argv = ["eval", "--model", str(model), "--out", str(out), "--engine", self.config.eval_engine,
                "--max-new-tokens", str(self.config.eval_max_new_tokens),
                "--batch-size", str(self.config.eval_batch_size)]  # fmt: skip
        for name in self.config.test_sets:
            argv += ["--data", f"{name}={self.out / 'data' / name}"]
        if self.config.eval_limit:
            argv += ["--limit", str(self.config.eval_limit)]
        self._bridge(argv)
        self._mark(stage, out / ".stage.json", settings)

    def _probe_targets(self, seed: int, base: Path) -> Path | None:
        """The seed's screened influence targets (`ProbeConfig.target_alpha`), or None: screened once, on the control
        method's SFT model (trained first if missing), and shared by every method."""
        probe = self.config.probe
        if not probe.screens():
            return None
        control = self.config.control_method()
        model = self.sft_model(control, seed, base)
        out = self.out / "probe_targets" / f"seed_{seed}.json"
        marker = out.with_suffix(".stage.json")
        targets = self.out / "data" / probe.targets
        settings = {
            "model": self._fp(model),
            "targets": self._fp(targets),
            "seed": seed,
            "engine": self.config.eval_engine,
            "max_new_tokens": probe.max_new_tokens,
            **{k: getattr(probe, k) for k in ("size", "target_alpha", "target_pool", "screen_generations")},
        }
        if probe.batch_size != EVAL_BATCH_SIZE:
            settings["batch_size"] = probe.batch_size
        if self._finished("target screening", out, marker, settings):
            return out
        self._stage(control, seed, "target screening")
        from bridge_pl.analysis.measure import screen_targets  # torch: only here

        # seed + 2: rollouts of their own (the probe samples its prompts with the seed and its targets with seed + 1)
        alphas = screen_targets(
            str(model), str(targets), pool=probe.target_pool, num_generations=probe.screen_generations,
            max_new_tokens=probe.max_new_tokens, seed=seed + 2, engine_kind=self.config.eval_engine,
            batch_size=probe.batch_size,
        )  # fmt: skip
        low, high = probe.target_alpha
        keep = [i for i, alpha in enumerate(alphas) if low <= alpha <= high][: probe.size]
        if not keep:
            raise RuntimeError(
                f"target screening, seed {seed}: no prompt of the first {probe.target_pool} of {targets} has a rollout "
                f"accuracy in {list(probe.target_alpha)} on {model}: widen probe.target_alpha or raise "
                "probe.target_pool"
            )
        self.log(f"[experiment] seed {seed}: {len(keep)} influence targets of {len(alphas)} screened on {control}")
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": str(model), "method": control, "index": keep, "alphas": alphas}
        out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        self._mark("target screening", marker, settings)
        return out

    def _probe(self, method: str, seed: int, model: Path, screened: Path | None) -> None:
        out = self.out / method / f"seed_{seed}" / "probe.json"
        probe = self.config.probe
        settings = {
            "model": self._fp(model),
            "probe": probe.settings(),
            "seed": seed,
            "engine": self.config.eval_engine,
            "prompts": self._fp(self.out / "data" / probe.prompts),
            "targets": self._fp(self.out / "data" / probe.targets),
        }
        target_index = None if screened is None else json.loads(screened.read_text(encoding="utf-8"))["index"]
        if screened is not None:  # the screening's settings and what it kept (a screening redone may keep others)
            settings |= {"screened_targets": self._fp(screened), "target_index": target_index}
        marker = out.parent / ".probe.stage.json"
        if self._finished("probe", out, marker, settings):
            return
        self._stage(method, seed, "probe")
        from bridge_pl.analysis.measure import probe_model  # torch: only here

        result = probe_model(
            str(model), str(self.out / "data" / probe.prompts), str(self.out / "data" / probe.targets),
            size=probe.size, num_generations=probe.num_generations, max_new_tokens=probe.max_new_tokens,
            influence=probe.influence, parameters=probe.parameters, seed=seed, engine_kind=self.config.eval_engine,
            target_index=target_index, batch_size=probe.batch_size,
        )  # fmt: skip
        if screened is not None:  # how its targets were chosen, for the report
            keys = ("parameters", "target_alpha", "target_pool", "screen_generations", "size")
            screening = {"on": self.config.control_method()} | {k: getattr(probe, k) for k in keys}
            result["influence"]["screening"] = screening
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        self._mark("probe", marker, settings)

    # --------------------------------------------------------------------------------------- helpers
    def _generate(self, path: Path, plan: GenerationPlan) -> None:
        settings = {"plan": dataclasses.asdict(plan)}
        if self._finished(f"data set {path.name}", path, path / ".stage.json", settings):
            return
        generate_dataset(path, plan, overwrite=True)
        self._mark(f"data set {path.name}", path / ".stage.json", settings)

    def _fp(self, path: Path) -> str:
        return self.fingerprints[str(path)]

    def _config_digest(self, path: str) -> str:
        """Digest of a training config's content (`_config_digest`), remembering its byte digest for older markers."""
        digest = _config_digest(path)
        self.older[digest] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return digest

    def _finished(self, stage: str, output: Path, marker: Path, settings: dict[str, Any]) -> bool:
        """Whether `output` was made by exactly these settings; stale outputs raise (or, with force, are removed).

        A marker written before config files were digested by content holds the file's byte digest (and the older
        fingerprints of earlier stages): it matches while the bytes are unchanged, and is rewritten in the new form.
        """
        fingerprint = _fingerprint(settings)
        self.fingerprints[str(output)] = fingerprint
        if marker.is_file() and output.exists():  # a marker without its output (deleted by hand) is redone
            recorded = json.loads(marker.read_text(encoding="utf-8"))
            # What the older code would have recorded; kept for every stage that is accepted, since a later stage's
            # marker may still be in the older form (a run cut short, or --methods, after this one was rewritten).
            older = _fingerprint({k: self.older.get(v, v) if isinstance(v, str) else v for k, v in settings.items()})
            if recorded.get("fingerprint") in (fingerprint, older):
                self.older[fingerprint] = older
                if recorded["fingerprint"] != fingerprint:  # an older marker: rewritten in the new form, once
                    self._mark(recorded.get("stage", stage), marker, settings)
                return True
            if not self.force:
                changes = "; ".join(
                    f"{key}: {old!r} -> {new!r}" for key, (old, new) in _differences(recorded.get("settings", {}),
                                                                                      settings).items()
                )  # fmt: skip
                raise ValueError(
                    f"stage {stage} in {output} was made with other settings ({changes}). Rerun with "
                    "`bridge experiment run --force` to redo it and everything after it, or choose a new out_dir."
                )
        # no marker (interrupted) or stale with force: the old output goes before it is redone
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()
        marker.unlink(missing_ok=True)
        return False

    def _mark(self, stage: str, marker: Path, settings: dict[str, Any]) -> None:
        """Written after the outputs, so a stage cut short has no marker and is redone."""
        record = {"stage": stage, "fingerprint": _fingerprint(settings), "settings": settings}
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")

    def _stage(self, method: str, seed: int, stage: str) -> None:
        self.log(f"[experiment] {time.strftime('%H:%M:%S')} {method} seed {seed}: {stage}")

    def _fit(self, args: list[str]) -> None:
        self._bridge(["fit", *args, "--trainer.enable_progress_bar", "false"])

    def _bridge(self, argv: list[str]) -> None:
        """Run `bridge ...` in a subprocess (a fresh process per training run, as a user runs them)."""
        command = [sys.executable, "-m", "bridge_pl.cli", *argv]
        result = subprocess.run(command, env=os.environ.copy(), capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-4000:]
            raise RuntimeError(f"`bridge {' '.join(argv)}` failed (exit {result.returncode}):\n{tail}")


def run_experiment(config: ExperimentConfig, methods=None, seeds=None, log=print, force=False) -> dict[str, Any]:
    """Run (or continue) an experiment and build its report; `force` redoes stages made with other settings."""
    return Runner(config, log, force).run(methods, seeds)


def _fingerprint(settings: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a stage's settings."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _config_digest(path: str) -> str:
    """sha256 of a YAML config's parsed content: comments, layout and key order do not change it."""
    content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return _fingerprint({"config": content})


def _differences(old: Any, new: Any, key: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old, new) of every setting that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: dict[str, tuple[Any, Any]] = {}
        for name in sorted(set(old) | set(new)):
            found |= _differences(old.get(name), new.get(name), f"{key}.{name}" if key else name)
        return found
    old, new = json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str))
    return {} if old == new else {key or "settings": (old, new)}


# ------------------------------------------------------------------------------------------------ report
def build_report(config: ExperimentConfig) -> dict[str, Any]:
    """Collect every finished run of the experiment into report.json, report.md, figures and TensorBoard."""
    runs = _collect(config, Path(config.out_dir))
    table = _table(config, runs)
    finished = [s for s in config.seeds if all("rft_eval" in runs[f"{m}/seed_{s}"] for m in config.methods)]
    report = {"methods": list(config.methods), "seeds": list(config.seeds), "finished_seeds": finished,
              "table": table, "runs": runs}  # fmt: skip
    where = config.report_path()
    where.mkdir(parents=True, exist_ok=True)
    (where / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    figures = _figures(config, where, runs)
    (where / "report.md").write_text(_markdown(config, table, figures, finished, runs), encoding="utf-8")
    _tensorboard(where, table, figures)
    return report


def _collect(config: ExperimentConfig, out: Path) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for method in config.methods:
        for seed in config.seeds:
            run = out / method / f"seed_{seed}"
            entry: dict[str, Any] = {"method": method, "seed": seed}
            for stage in ("sft_eval", "rft_eval"):
                path = run / stage / "eval.json"
                if path.is_file():
                    splits = json.loads(path.read_text())["splits"]
                    entry[stage] = {name: s["accuracy"] for name, s in splits.items()}
                    entry[f"{stage}_rows"] = {name: {r["index"]: bool(r["correct"]) for r in s.get("rows", [])}
                                              for name, s in splits.items()}  # fmt: skip
            if (run / "probe.json").is_file():
                probe = json.loads((run / "probe.json").read_text())
                entry["probe"] = {k: probe[k] for k in ("histogram", "influence") if k in probe}
                influence = entry["probe"].get("influence", {})
                influence.pop("prompts", None)  # per-prompt values stay in probe.json
                if "targets" in influence:  # written since the targets can be screened: how many, and how chosen
                    influence["targets"] = {"count": len(influence["targets"]),
                                            "screening": influence.pop("screening", None)}  # fmt: skip
            entry["reward_curve"] = _reward_curve(out / "tb" / f"{method}_seed{seed}" / "grpo")
            runs[f"{method}/seed_{seed}"] = entry
    return runs


def _reward_curve(tb_dir: Path) -> list[list[float]]:
    """(step, train/reward) pairs of a GRPO TensorBoard run ([] when there is none)."""
    events = sorted(tb_dir.glob("events.out.tfevents*")) if tb_dir.is_dir() else []
    if not events:
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[-1]), size_guidance={"scalars": 0})
    accumulator.Reload()
    if "train/reward" not in accumulator.Tags()["scalars"]:
        return []
    return [[e.step, e.value] for e in accumulator.Scalars("train/reward")]


def _stats(values: list[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def _table(config: ExperimentConfig, runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method and test set: SFT, RFT and gain (mean, std, n over seeds), P(0<alpha<1) and influence."""
    table = {}
    for method in config.methods:
        entries = [runs[f"{method}/seed_{s}"] for s in config.seeds]
        row: dict[str, Any] = {}
        for name in config.test_sets:
            sft = [e["sft_eval"][name] for e in entries if name in e.get("sft_eval", {})]
            rft = [e["rft_eval"][name] for e in entries if name in e.get("rft_eval", {})]
            gain = [e["rft_eval"][name] - e["sft_eval"][name] for e in entries
                    if name in e.get("rft_eval", {}) and name in e.get("sft_eval", {})]  # fmt: skip
            row[name] = {"sft": _stats(sft), "rft": _stats(rft), "gain": _stats(gain)}
        probes = [e["probe"] for e in entries if "probe" in e]
        row["informative_mass"] = _stats([p["histogram"]["informative_mass"] for p in probes])
        row["mean_sqrt_var"] = _stats([p["histogram"]["mean_sqrt_var"] for p in probes])
        row["influence_total"] = _stats([p["influence"]["total"] for p in probes if "influence" in p])
        row["target_grad_norm"] = _stats([p["influence"]["target_grad_norm"] for p in probes if "influence" in p])
        row["rl_steps"] = _stats([len(e["reward_curve"]) for e in entries if e["reward_curve"]])  # early stopping
        table[method] = row
    control = config.control_method()
    for method in config.methods:
        for name in config.test_sets:
            arrays = {m: _correctness(config, runs, m, name) for m in (method, control)}
            if arrays[method] is None or arrays[control] is None:
                continue
            seeds = sorted(set(arrays[method]) & set(arrays[control]))
            problems = sorted(set.intersection(*(set(arrays[m][s][0]) for m in arrays for s in seeds))) if seeds else []
            if not problems:
                continue
            pairs = {m: tuple(np.array([[arrays[m][s][k][i] for i in problems] for s in seeds], dtype=float)
                              for k in (0, 1)) for m in arrays}  # fmt: skip
            result = paired_gain_difference(pairs[method], pairs[control], samples=config.bootstrap_samples)
            table[method][name]["gain_ci"] = result["treatment_gain"]
            if method != control:
                table[method][name]["paired"] = {"control": control, **result}
    return table


def _correctness(config: ExperimentConfig, runs: dict[str, dict[str, Any]], method: str, name: str):
    """seed -> (SFT, RFT) correctness by problem index of one method on one test set (None without rows)."""
    found = {}
    for seed in config.seeds:
        entry = runs[f"{method}/seed_{seed}"]
        sft, rft = (entry.get(f"{stage}_rows", {}).get(name) for stage in ("sft_eval", "rft_eval"))
        if sft and rft:
            found[seed] = (sft, rft)
    return found or None


def _cell(stats: dict[str, float] | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    """mean ± std (std only with several seeds) of a statistics dict, scaled, or a dash."""
    if stats is None:
        return "–"
    text = f"{scale * stats['mean']:{fmt}}"
    return text + (f" ± {scale * stats['std']:{fmt.lstrip('+')}}" if stats["n"] > 1 else "")


def _markdown(
    config: ExperimentConfig,
    table: dict[str, dict[str, Any]],
    figures: dict[str, str],
    finished: list[int],
    runs: dict[str, dict[str, Any]],
) -> str:
    sets = config.test_sets
    head = ["method"] + [f"{name} {col}" for name in sets for col in ("SFT", "RFT", "Δ")]
    head += ["P(0<α<1)", "E[√α(1−α)]", "influence", "‖T‖", "RL steps"]
    lines = [
        f"# Experiment report (seeds finished by every method: {', '.join(map(str, finished)) or 'none'}; "
        f"configured: {', '.join(map(str, config.seeds))})",
        "",
        "Strict-match greedy accuracy in % (mean ± std over seeds); Δ = RFT − SFT. P(0<α<1), E[√α(1−α)] and the "
        "per-step influence (mean I(q) over the probe prompts, per unit learning rate) are measured on the SFT model "
        "before RL; ‖T‖ is the norm of the target set's reward gradient, which scales every I(q). RL steps: GRPO steps "
        "run (fewer than the budget when validation stopped improving).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for method, row in table.items():
        cells = [method]
        for name in sets:
            cells += [_cell(row[name]["sft"]), _cell(row[name]["rft"]), _cell(row[name]["gain"], fmt="+.1f")]
        cells += [_cell(row["informative_mass"], 1.0, ".2f"), _cell(row["mean_sqrt_var"], 1.0, ".3f"),
                  _cell(row["influence_total"], 1.0, ".2e"), _cell(row["target_grad_norm"], 1.0, ".2e"),
                  _cell(row["rl_steps"], 1.0, ".0f")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += _targets_markdown(config, runs)
    lines += _paired_markdown(config, table)
    for title, name in figures.items():
        lines += ["", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def _targets_markdown(config: ExperimentConfig, runs: dict[str, dict[str, Any]]) -> list[str]:
    """What the influence's target sets were, read from the probes on disk (not from the config)."""
    targets = {key: e["probe"]["influence"].get("targets") or {} for key, e in runs.items()
               if "influence" in e.get("probe", {})}  # fmt: skip
    if not targets:
        return []
    screenings = {json.dumps(t.get("screening"), sort_keys=True) for t in targets.values()}
    if len(screenings) > 1:
        unscreened = sorted(key for key, t in targets.items() if not t.get("screening"))
        return [
            "",
            "Influence targets: the probes were made with different target screenings (unscreened: "
            f"{', '.join(unscreened) or 'none'}); `bridge experiment run --force` remakes the stale ones.",
        ]
    screening = next(iter(targets.values())).get("screening")
    counts = {runs[key]["seed"]: t["count"] for key, t in targets.items() if "count" in t}
    per_seed = ", ".join(f"{n} (seed {s})" for s, n in sorted(counts.items()))
    if screening is None:
        return ["", f"Influence targets: the first {per_seed or config.probe.size} {config.probe.targets} prompts, "
                "unscreened."]  # fmt: skip
    low, high = screening["target_alpha"]
    on = screening["on"]
    return ["", f"Influence targets, per seed: the {config.probe.targets} prompts, of the first "
            f"{screening['target_pool']}, whose rollout accuracy on the {on} SFT model lay in [{low}, {high}] "
            f"({screening['screen_generations']} rollouts of their own), at most {screening['size']}, the same set for "
            f"every method: {per_seed}. Gradients of {screening['parameters']} parameters. A method whose accuracy on "
            f"these prompts is nearer 0 or 1 than {on}'s has a smaller ‖T‖, and so a smaller influence, whatever its "
            "training prompts."]  # fmt: skip


def _paired_markdown(config: ExperimentConfig, table: dict[str, dict[str, Any]]) -> list[str]:
    """The gains with their bootstrap intervals, and each method minus the control, paired by seed and problem."""
    control = config.control_method()
    rows = []
    for method, row in table.items():
        for name in config.test_sets:
            cell = row[name]
            if "gain_ci" not in cell:
                continue
            gain, paired = cell["gain_ci"], cell.get("paired")
            diff = "–" if paired is None else _interval(paired["difference"])
            p_boot = "–" if paired is None else f"{paired['difference']['p_value']:.3f}"
            p_flip = "–" if paired is None else f"{paired['sign_flip_p']:.3f}"
            rows.append(f"| {method} | {name} | {_interval(gain)} | {diff} | {p_boot} | {p_flip} | {gain['seeds']} | "
                        f"{gain['problems']} |")  # fmt: skip
    if not rows:
        return []
    level = int(round(100 * next(c["gain_ci"]["level"] for r in table.values() for n in config.test_sets
                                 if "gain_ci" in (c := r[n]))))  # fmt: skip
    return [
        "",
        f"## RL gain with {level}% intervals, and each method minus {control}",
        "",
        f"Gain = RFT − SFT accuracy in points. Intervals: two-level percentile bootstrap ({config.bootstrap_samples} "
        "replicates: seeds with replacement, then test problems with replacement within each seed), so they hold "
        f"the seed-to-seed spread and the finite test set. The difference is paired: the method and {control} share "
        "seeds and test problems. p (bootstrap): two-sided, of difference = 0; p (sign flip): exact over the "
        "per-seed differences (smallest possible with S seeds: 2/2^S).",
        "",
        f"| method | test set | gain | gain − {control} gain | p (bootstrap) | p (sign flip) | seeds | problems |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _interval(iv: dict[str, float]) -> str:
    """A bootstrap interval in points: "+3.1 [+0.4, +5.9]"."""
    return f"{100 * iv['mean']:+.1f} [{100 * iv['low']:+.1f}, {100 * iv['high']:+.1f}]"


def _figures(config: ExperimentConfig, out: Path, runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Write the comparison figures (matplotlib); returns title -> file name."""
    from bridge_pl.analysis.plots import matplotlib_available

    if not matplotlib_available():
        return {}
    from bridge_pl.analysis.accuracy import accuracy_histogram
    from bridge_pl.analysis.plots import (
        accuracy_figure,
        influence_comparison_figure,
        reward_curves_figure,
        save_figure,
    )

    made = {}
    pooled = {}
    for method in config.methods:
        alphas = [a for s in config.seeds for a in runs[f"{method}/seed_{s}"].get("probe", {}).get("histogram", {})
                  .get("alphas", [])]  # fmt: skip
        if alphas:
            pooled[method] = accuracy_histogram(alphas)
    if pooled:
        save_figure(
            accuracy_figure(pooled, "Rollout accuracy of the SFT models (before RL)"), out / "alpha_histograms.png"
        )
        made["rollout accuracy before RL"] = "alpha_histograms.png"
    influence = {}
    for method in config.methods:
        measured = [runs[f"{method}/seed_{s}"].get("probe", {}).get("influence") for s in config.seeds]
        measured = [m for m in measured if m]
        if measured:  # sum of I per bin, averaged over seeds
            influence[method] = {b: {"influence_sum": sum(m["by_bin"][b]["influence_sum"] for m in measured)
                                     / len(measured)} for b in measured[0]["by_bin"]}  # fmt: skip
    if influence:
        figure = influence_comparison_figure(influence, "Per-step influence of the SFT models by α bin")
        save_figure(figure, out / "influence_by_bin.png")
        made["per-step influence by rollout accuracy"] = "influence_by_bin.png"
    curves = {key: run["reward_curve"] for key, run in runs.items() if run["reward_curve"]}
    if curves:
        save_figure(reward_curves_figure(curves), out / "reward_curves.png")
        made["GRPO training reward"] = "reward_curves.png"
    return made


def _tensorboard(out: Path, table: dict[str, Any], figures: dict[str, str]) -> None:
    """The report table as TensorBoard text and the figures as images, under <out>/tb/report."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb" / "report"))
    writer.add_text("report/table", (out / "report.md").read_text(encoding="utf-8"), global_step=0)
    try:
        import matplotlib.image as mpimg

        for title, name in figures.items():
            image = mpimg.imread(out / name)
            writer.add_image(f"report/{title}", image[..., :3], global_step=0, dataformats="HWC")
    except ImportError:
        pass
    writer.close()
