"""The experiment pipeline end to end on a micro setting: every stage, skipping finished ones, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bridge_pl.cli import main as bridge_main
from bridge_pl.experiment import load_config, read_settings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.yaml"))

MICRO_SFT = [
    "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
    "--data.init_args.limit", "16", "--data.init_args.batch_size", "4", "--data.init_args.max_length", "512",
    "--data.init_args.truncation", "truncate", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
    "--trainer.strategy", "auto", "--trainer.precision", "32-true", "--trainer.accumulate_grad_batches", "1",
]  # fmt: skip
MICRO_GRPO = [
    "--trainer.max_steps", "1", "--trainer.val_check_interval", "1", "--trainer.limit_val_batches", "1",
    "--data.init_args.batch_size", "2", "--data.init_args.limit_val", "2", "--model.init_args.rollout.num_generations",
    "2", "--model.init_args.rollout.sampling.max_new_tokens", "8", "--trainer.accelerator", "cpu",
    "--trainer.devices", "1",
    "--trainer.strategy", "auto", "--trainer.precision", "32-true", "--model.init_args.engine",
    "bridge_pl.rollout.HFEngine", "--model.init_args.gradient_checkpointing", "false",
]  # fmt: skip


def micro(config: Path, tmp_path: Path, base_model: Path | None = None, every_method: bool = False) -> Path:
    """The experiment with everything shrunk to seconds: 1 seed, 2 SFT steps, 1 GRPO step, 4 problems; every method,
    or the first the file names itself (the first of those it extends when it names none) and the first
    rejection-sampling method with its source. Rejection sampling is shrunk too. The config's own GRPO arguments
    (early stopping) run, before the micro ones."""
    settings = read_settings(config)
    if every_method:
        methods = dict(settings["methods"])
    else:
        own = (yaml.safe_load(config.read_text()).get("methods") or {}).keys()
        first = next(iter(own), next(iter(settings["methods"])))
        methods = {first: settings["methods"][first]}
        rejection = next((name for name, spec in settings["methods"].items() if (spec or {}).get("rejection")), None)
        if rejection is not None:
            source = settings["methods"][rejection]["rejection"]["source"]
            methods |= {source: settings["methods"][source], rejection: settings["methods"][rejection]}
    for name, spec in methods.items():
        if (spec or {}).get("rejection"):
            shrunk = {"size": 3, "num_generations": 2, "max_new_tokens": 8, "alpha_min": 0.0}
            methods[name] = spec | {"rejection": spec["rejection"] | shrunk}
    for spec in methods.values():
        (spec or {}).pop("sft_args", None)
    if settings.get("pretrain"):
        settings["pretrain"] |= {"size": 16, "args": MICRO_SFT}
    settings |= {
        "out_dir": str(tmp_path / "out"), "seeds": [0], "methods": methods, "report_dir": None,
        "sft_args": MICRO_SFT, "grpo_args": [*settings.get("grpo_args", []), *MICRO_GRPO],
        "eval_max_new_tokens": 8, "eval_limit": 4,
        "eval_engine": "hf", "base_preset": "llama-1m", "sft_split": "tiny_sft",
        "sets": {"rl_train": "tiny_rl_train", "rl_val": "tiny_rl_val", "test_id": "tiny_test_id",
                 "test_ood": "tiny_test_ood"},
        "probe": {**settings.get("probe", {}), "size": 3, "num_generations": 2, "max_new_tokens": 8},
    }  # fmt: skip
    settings["test_sets"] = ["test_id", "test_ood"]
    settings["probe"] |= {"prompts": "rl_train", "targets": "rl_val"}
    if settings["probe"].get("target_alpha"):  # the whole window: every prompt passes the screening, whatever the model
        settings["probe"] |= {"target_alpha": [0.0, 1.0], "target_pool": 5, "screen_generations": 2}
    if base_model is not None:
        settings["base_model"] = str(base_model)
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(settings))
    return path


def test_every_experiment_config_loads():
    assert {p.name for p in EXPERIMENTS} >= {"tiny.yaml"}
    for path in EXPERIMENTS:
        config = load_config(path)
        assert Path(config.sft_config).is_file() and Path(config.grpo_config).is_file(), path
        assert config.methods and config.seeds


def test_tiny_experiment_runs_every_stage_and_reports(tmp_path, capsys):
    config = micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path)
    assert bridge_main(["experiment", "run", "--config", str(config)]) == 0
    out = tmp_path / "out"
    run = out / "vanilla" / "seed_0"
    for path in ("sft_model/config.json", "rft_model/config.json", "sft_eval/eval.json", "rft_eval/eval.json",
                 "probe.json"):  # fmt: skip
        assert (run / path).is_file(), path
    probe = json.loads((run / "probe.json").read_text())
    assert len(probe["histogram"]["alphas"]) == 3 and "by_bin" in probe["influence"]
    screened = json.loads((out / "probe_targets" / "seed_0.json").read_text())  # tiny.yaml screens the targets
    assert len(screened["alphas"]) == 5 and probe["influence"]["targets"] == screened["index"] == [0, 1, 2]
    report = json.loads((out / "report.json").read_text())
    row = report["table"]["vanilla"]["test_id"]
    assert (
        row["sft"]["n"] == 1
        and row["rft"]["n"] == 1
        and row["gain"]["mean"] == pytest.approx(row["rft"]["mean"] - row["sft"]["mean"])
    )
    assert report["runs"]["vanilla/seed_0"]["reward_curve"]  # read back from the GRPO TensorBoard run
    text = (out / "report.md").read_text()
    assert "| method | test_id SFT | test_id RFT | test_id Δ |" in text and "| vanilla |" in text
    assert "rollout accuracy on the vanilla SFT model lay in [0.0, 1.0]" in text  # the screened targets are stated
    assert "every method: 3 (seed 0)" in text and "| ‖T‖ |" in text
    assert (out / "reward_curves.png").is_file() and (out / "alpha_histograms.png").is_file()
    assert list((out / "tb" / "report").glob("events*"))
    # A second run finds every output and skips every stage.
    capsys.readouterr()
    assert bridge_main(["experiment", "run", "--config", str(config)]) == 0
    assert "[experiment]" not in capsys.readouterr().out


# tiny.yaml has the test above. The tiny_* part configs are tiny.yaml plus methods (the test below checks that): their
# union, tiny_baselines.yaml, runs here with every method in one experiment.
MICRO_RUN = [p for p in EXPERIMENTS if p.name == "tiny_baselines.yaml" or not p.name.startswith("tiny")]


@pytest.mark.parametrize("config", MICRO_RUN, ids=lambda p: p.name)
def test_paper_experiment_configs_run_on_the_tiny_model(config, tmp_path, monkeypatch):
    import bridge_pl.analysis.rejection as rejection
    from bridge_pl.experiment import Runner

    # A rejection-sampling method samples a micro model that is never right: keep each prompt's first rollout so
    # that its data and fine-tuning stages still run for real.
    monkeypatch.setattr(rejection, "select_rollouts", lambda correct, *_, **__: [(p, 0) for p in range(len(correct))])
    # Every `bridge fit` and `bridge eval` in this process (tiny.yaml's test runs them as subprocesses): ~5 s saved a
    # stage, the interpreter start and imports.
    monkeypatch.setattr(Runner, "_bridge", lambda self, argv: _in_process(argv))
    base = tmp_path / "base"
    assert bridge_main(["model", "init", "--out", str(base), "--preset", "llama-1m"]) == 0
    every_method = config.name == "tiny_baselines.yaml"
    assert bridge_main(["experiment", "run", "--config", str(micro(config, tmp_path, base, every_method))]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["finished_seeds"] == [0] and (not every_method or len(report["methods"]) == 7)


def _in_process(argv: list[str]) -> None:
    if bridge_main(argv) != 0:
        raise RuntimeError(f"`bridge {' '.join(argv)}` failed")


def test_bad_experiment_configs_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"out_dir": "x", "sft_config": "a", "grpo_config": "b", "methods": {"v": {}},
                                    "colour": "red"}))  # fmt: skip
    assert bridge_main(["experiment", "run", "--config", str(path)]) == 2
    path.write_text(yaml.safe_dump({"out_dir": "x", "sft_config": "a", "grpo_config": "b", "methods": {"v": {}}}))
    assert bridge_main(["experiment", "run", "--config", str(path), "--methods", "bridge"]) == 2


def test_a_config_extends_others_merging_mappings_and_replacing_the_rest(tmp_path, capsys):
    base = {"out_dir": "o", "sft_config": "a", "grpo_config": "b", "seeds": [0, 1],
            "methods": {"v": {"style": "plain"}}, "probe": {"size": 8, "influence": True}}  # fmt: skip
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.yaml").write_text(yaml.safe_dump({"extends": "../base.yaml", "seeds": [2],
                                                                "methods": {"x": {"style": "bridge"}}}))  # fmt: skip
    (tmp_path / "parts" / "b.yaml").write_text(yaml.safe_dump({"extends": "../base.yaml", "probe": {"size": 4},
                                                                "methods": {"v": {"copies": 2}}}))  # fmt: skip
    (tmp_path / "parts" / "ab.yaml").write_text(yaml.safe_dump({"extends": ["a.yaml", "b.yaml"], "report_dir": "r"}))
    settings = read_settings(tmp_path / "parts" / "ab.yaml")
    # Lists and scalars replace; a later parent wins with what it inherits too (b's seeds are base's).
    assert settings["seeds"] == [0, 1] and settings["report_dir"] == "r"
    assert read_settings(tmp_path / "parts" / "a.yaml")["seeds"] == [2]
    assert settings["methods"] == {"v": {"style": "plain", "copies": 2}, "x": {"style": "bridge"}}  # mappings merge
    assert settings["probe"] == {"size": 4, "influence": True}
    assert list(load_config(tmp_path / "parts" / "ab.yaml").methods) == ["v", "x"]  # the parent's methods first
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump({"extends": "loop2.yaml"}))
    (tmp_path / "loop2.yaml").write_text(yaml.safe_dump({"extends": "loop.yaml"}))
    (tmp_path / "lost.yaml").write_text(yaml.safe_dump({"extends": "nowhere.yaml"}))
    (tmp_path / "number.yaml").write_text(yaml.safe_dump({"extends": 5}))
    (tmp_path / "emptied.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "probe": None}))
    (tmp_path / "colour.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "colour": "red"}))
    for name, message in (("loop.yaml", "loops back"), ("lost.yaml", "no file"), ("number.yaml", "extends=5: give"),
                          ("emptied.yaml", "emptied.yaml: probe is empty"),
                          ("colour.yaml", "colour.yaml: unknown key(s) colour")):  # fmt: skip
        assert bridge_main(["experiment", "run", "--config", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err, name


def test_the_tiny_part_configs_share_every_stage_setting_with_tiny_yaml():
    """A part differs from tiny.yaml only in its methods, seeds and report folder, so it reuses tiny.yaml's stages."""
    main = read_settings(CONFIGS / "experiments" / "tiny.yaml")
    parts = [p for p in EXPERIMENTS if p.name.startswith("tiny_")]
    assert {p.name for p in parts} >= {"tiny_ablations.yaml", "tiny_baselines.yaml", "tiny_rejection.yaml"}
    for path in parts:
        settings = read_settings(path)
        assert {m: settings["methods"][m] for m in main["methods"]} == main["methods"], path.name  # the same runs
        for key in ("methods", "seeds", "report_dir"):
            settings.pop(key, None)
        assert settings == {k: v for k, v in main.items() if k not in ("methods", "seeds")}, path.name
        assert set(load_config(path).methods) >= set(main["methods"]), path.name  # vanilla and BRIDGE in every report
    union = load_config(CONFIGS / "experiments" / "tiny_baselines.yaml").methods
    assert set(union) == {m for p in parts for m in load_config(p).methods}


def test_method_overrides_reach_the_plan_and_bad_ones_fail_at_load(tmp_path, capsys):
    from bridge_pl.experiment import MethodConfig

    method = MethodConfig(style="bridge", behaviors="full", behavior_overrides={"exploration": 0.3},
                          generator_overrides={"max_op": 3})  # fmt: skip
    plan = method.plan("tiny_sft")
    assert plan.style.behaviors.exploration == 0.3 and plan.generator.max_op == 3
    path = tmp_path / "bad.yaml"
    methods = {"v": {"style": "bridge", "behavior_overrides": {"exploration": 2.0}}}
    path.write_text(yaml.safe_dump({"out_dir": str(tmp_path / "o"), "sft_config": "a", "grpo_config": "b",
                                    "methods": methods}))  # fmt: skip
    assert bridge_main(["experiment", "run", "--config", str(path)]) == 2
    assert "methods.v:" in capsys.readouterr().err and not (tmp_path / "o").exists()  # refused before any work


def test_the_pipeline_is_reproducible_from_the_seed(tmp_path):
    reports = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        config = micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path / name)
        assert bridge_main(["experiment", "run", "--config", str(config)]) == 0
        run = tmp_path / name / "out" / "vanilla" / "seed_0"
        evals = [json.loads((run / stage / "eval.json").read_text())["splits"] for stage in ("sft_eval", "rft_eval")]
        probe = json.loads((run / "probe.json").read_text())
        reports.append(([{k: [r["predicted"] for r in s["rows"]] for k, s in e.items()} for e in evals],
                        probe["histogram"]["alphas"], probe["influence"]["total"]))  # fmt: skip
    assert reports[0] == reports[1]


# ------------------------------------------------------------------------------------------------ stale stages
@pytest.fixture
def fake_stages(monkeypatch):
    """Replace training, evaluation, probing and model init by writers of fake outputs; returns the stage log."""
    import bridge_pl.analysis.measure as measure
    import bridge_pl.models.model_io as model_io
    from bridge_pl.experiment import Runner

    done: list[str] = []

    def fit(self, args):
        out = Path(args[args.index("--model.init_args.hf_output_dir") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        done.append(out.name)

    def bridge(self, argv):
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        splits = {name: {"accuracy": 0.5} for name in self.config.test_sets}
        (out / "eval.json").write_text(json.dumps({"splits": splits}))
        done.append(out.name)

    def probe_model(*args, target_index=None, **kwargs):
        done.append("probe")
        return _fake_probe(target_index)

    def screen_targets(*args, pool, **kwargs):
        done.append("screen")
        return [0.5] * pool

    def init_model_dir(path, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "config.json").write_text("{}")
        done.append("base")

    monkeypatch.setattr(Runner, "_fit", fit)
    monkeypatch.setattr(Runner, "_bridge", bridge)
    monkeypatch.setattr(measure, "probe_model", probe_model)
    monkeypatch.setattr(measure, "screen_targets", screen_targets)
    monkeypatch.setattr(model_io, "init_model_dir", init_model_dir)
    return done


def _fake_probe(target_index: list[int] | None) -> dict:
    """What probe_model returns, without measuring: the influence only for screened targets (as in the tiny config)."""
    from bridge_pl.analysis.influence import influence_by_bin

    result = {"histogram": {"informative_mass": 0.5, "mean_sqrt_var": 0.1, "alphas": []}}
    if target_index is not None:
        result["influence"] = {"total": 0.0, "target_grad_norm": 1.0, "by_bin": influence_by_bin([]),
                               "targets": target_index}  # fmt: skip
    return result


def _fake_config(tmp_path: Path, **changes):
    import dataclasses

    config = load_config(micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path))
    probe = dataclasses.replace(config.probe, target_alpha=None)
    # the stage lists below start without a pretrain stage or a target screening
    return dataclasses.replace(config, **({"pretrain": None, "probe": probe} | changes))


def test_rerun_with_same_config_skips_every_stage(tmp_path, fake_stages):
    from bridge_pl.experiment import run_experiment

    config = _fake_config(tmp_path)
    run_experiment(config, log=lambda _: None)
    assert fake_stages == ["base", "sft_model", "sft_eval", "probe", "rft_model", "rft_eval"]
    fake_stages.clear()
    run_experiment(config, log=lambda _: None)
    assert fake_stages == []


def test_batch_sizes_reach_eval_and_probe_and_mark_only_when_set(tmp_path, fake_stages, monkeypatch):
    import dataclasses

    from bridge_pl.experiment import Runner, run_experiment

    calls: list[list[str]] = []
    bridge = Runner._bridge
    monkeypatch.setattr(Runner, "_bridge", lambda self, argv: (calls.append(argv), bridge(self, argv)))
    config = _fake_config(tmp_path)
    run_experiment(config, log=lambda _: None)
    marker = tmp_path / "out" / "vanilla" / "seed_0" / "sft_eval" / ".stage.json"
    assert "batch_size" not in json.loads(marker.read_text())["settings"]  # markers of the default stay as they were
    assert calls[0][calls[0].index("--batch-size") + 1] == "64"
    with pytest.raises(ValueError, match="batch_size"):  # another batch size is another evaluation
        run_experiment(dataclasses.replace(config, eval_batch_size=256), log=lambda _: None)
    probe_marker = marker.parent.parent / ".probe.stage.json"
    assert "batch_size" not in json.loads(probe_marker.read_text())["settings"]["probe"]
    with pytest.raises(ValueError, match="batch_size"):  # and another probe
        run_experiment(dataclasses.replace(config, probe=dataclasses.replace(config.probe, batch_size=256)),
                       log=lambda _: None)  # fmt: skip


def test_changed_method_refuses_then_force_redoes_it_and_downstream(tmp_path, fake_stages):
    import dataclasses

    from bridge_pl.experiment import run_experiment

    config = _fake_config(tmp_path)
    run_experiment(config, log=lambda _: None)
    fake_stages.clear()
    name, method = next(iter(config.methods.items()))
    style = "bridge" if method.style == "plain" else "plain"
    changed = dataclasses.replace(config, methods={name: dataclasses.replace(method, style=style)})
    with pytest.raises(ValueError, match=r"style.*--force") as err:
        run_experiment(changed, log=lambda _: None)
    assert f"sft_{name}" in str(err.value) and fake_stages == []
    run_experiment(changed, log=lambda _: None, force=True)
    assert fake_stages == ["sft_model", "sft_eval", "probe", "rft_model", "rft_eval"]  # the base model is kept
    fake_stages.clear()
    run_experiment(changed, log=lambda _: None)
    assert fake_stages == []


def test_config_comments_do_not_make_stages_stale_and_older_byte_digest_markers_still_match(
    tmp_path, fake_stages, monkeypatch
):
    import dataclasses
    import hashlib

    import bridge_pl.experiment as experiment

    grpo = tmp_path / "grpo.yaml"
    grpo.write_text((CONFIGS / "grpo" / "tiny.yaml").read_text())
    config = _fake_config(tmp_path, grpo_config=str(grpo))
    experiment.run_experiment(config, log=lambda _: None)
    fake_stages.clear()
    grpo.write_text("# a new comment, and the same settings\n" + grpo.read_text())
    experiment.run_experiment(config, log=lambda _: None)
    assert fake_stages == []
    # markers of an older version hold each config file's byte digest: they match while the bytes are the same
    older = dataclasses.replace(config, out_dir=str(tmp_path / "older"))
    with monkeypatch.context() as patch:
        patch.setattr(experiment, "_config_digest", lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest())
        experiment.run_experiment(older, log=lambda _: None)
    fake_stages.clear()
    experiment.run_experiment(older, log=lambda _: None)
    assert fake_stages == []
    grpo.write_text("# the older markers were rewritten by content: a comment is free again\n" + grpo.read_text())
    experiment.run_experiment(older, log=lambda _: None)
    assert fake_stages == []
    # a changed setting is stale, as before
    grpo.write_text(grpo.read_text().replace("max_steps: 40", "max_steps: 7"))
    with pytest.raises(ValueError, match=r"grpo_config.*--force"):
        experiment.run_experiment(config, log=lambda _: None)


def test_older_markers_migrate_over_several_runs(tmp_path, fake_stages, monkeypatch):
    # pretrain upstream of two methods; the first run with the new code rewrites only the first method's markers
    # (--methods, or a run cut short), and the second method's older markers must still match in the next run
    import dataclasses
    import hashlib

    import bridge_pl.experiment as experiment

    config = load_config(micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path))
    full = load_config(CONFIGS / "experiments" / "tiny.yaml")
    methods = {name: dataclasses.replace(spec, sft_args=()) for name, spec in full.methods.items()}
    config = dataclasses.replace(config, methods=methods)
    assert config.pretrain is not None and len(config.methods) == 2
    with monkeypatch.context() as patch:
        patch.setattr(experiment, "_config_digest", lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest())
        experiment.run_experiment(config, log=lambda _: None)
    fake_stages.clear()
    experiment.run_experiment(config, methods=list(config.methods)[:1], log=lambda _: None)
    experiment.run_experiment(config, log=lambda _: None)
    assert fake_stages == []


def test_stage_without_marker_is_redone(tmp_path, fake_stages):
    from bridge_pl.experiment import run_experiment

    config = _fake_config(tmp_path)
    run_experiment(config, log=lambda _: None)
    fake_stages.clear()
    run = tmp_path / "out" / next(iter(config.methods)) / "seed_0"
    (run / "rft_model" / ".stage.json").unlink()  # as if GRPO had been cut short while saving
    (run / "rft_model" / "model.safetensors").write_text("trunc")
    run_experiment(config, log=lambda _: None)
    assert fake_stages == ["rft_model"]  # same settings: the finished evaluation after it stays
    assert not (run / "rft_model" / "model.safetensors").exists()


def test_report_pairs_each_method_with_the_control_by_seed_and_problem(tmp_path, fake_stages):
    # 2 seeds x 4 problems. vanilla gains: seed 0 (1, 0, 0, 0), seed 1 none -> 0.125; bridge: (1, 1, 0, 0) and
    # (1, 0, 0, 0) -> 0.375. Paired difference per problem: (0, 1, 0, 0), (1, 0, 0, 0) -> 0.25; per-seed differences
    # (0.25, 0.25): 2 of the 4 sign flips are as extreme, p = 0.5.
    import dataclasses

    from bridge_pl.experiment import MethodConfig, build_report

    config = _fake_config(tmp_path)
    config = dataclasses.replace(config, methods={"bridge": MethodConfig(style="bridge"), "vanilla": MethodConfig()},
                                 seeds=(0, 1), test_sets=("test_id",), bootstrap_samples=1000)  # fmt: skip
    outcomes = {("vanilla", 0): ([0, 0, 1, 1], [1, 0, 1, 1]), ("vanilla", 1): ([0, 0, 1, 1], [0, 0, 1, 1]),
                ("bridge", 0): ([0, 0, 1, 1], [1, 1, 1, 1]), ("bridge", 1): ([0, 0, 1, 1], [1, 0, 1, 1])}  # fmt: skip
    for (method, seed), (sft, rft) in outcomes.items():
        for stage, correct in (("sft_eval", sft), ("rft_eval", rft)):
            out = tmp_path / "out" / method / f"seed_{seed}" / stage
            out.mkdir(parents=True)
            rows = [{"index": i, "correct": bool(c)} for i, c in reversed(list(enumerate(correct)))]  # any order
            split = {"accuracy": sum(correct) / 4, "rows": rows}
            (out / "eval.json").write_text(json.dumps({"splits": {"test_id": split}}))
    report = build_report(config)
    assert config.control_method() == "vanilla"
    bridge, vanilla = report["table"]["bridge"]["test_id"], report["table"]["vanilla"]["test_id"]
    assert bridge["gain_ci"]["mean"] == 0.375 and vanilla["gain_ci"]["mean"] == 0.125 and "paired" not in vanilla
    paired = bridge["paired"]
    assert paired["control"] == "vanilla" and paired["difference"]["mean"] == 0.25 and paired["sign_flip_p"] == 0.5
    assert paired["difference"]["low"] <= 0.25 <= paired["difference"]["high"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "and each method minus vanilla" in text and "| bridge | test_id | +37.5 [" in text
    assert report["finished_seeds"] == [0, 1] and "seeds finished by every method: 0, 1; configured: 0, 1" in text
    partial = dataclasses.replace(config, seeds=(0, 1, 2))  # seed 2 not run yet: named as configured, not finished
    assert build_report(partial)["finished_seeds"] == [0, 1]
    assert "seeds finished by every method: 0, 1; configured: 0, 1, 2" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match="control='nope' is not one of the methods"):
        settings = yaml.safe_load(micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path).read_text())
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(settings | {"control": "nope"}))
        load_config(tmp_path / "bad.yaml")


def test_pretrain_stage_runs_once_per_seed_and_feeds_every_method(tmp_path, fake_stages, monkeypatch):
    import dataclasses

    from bridge_pl.experiment import MethodConfig, PretrainConfig, Runner

    calls: list[list[str]] = []
    fit = Runner._fit
    monkeypatch.setattr(Runner, "_fit", lambda self, args: (calls.append(args), fit(self, args)))
    config = _fake_config(tmp_path)
    config = dataclasses.replace(
        config, methods={"vanilla": MethodConfig(), "bridge": MethodConfig(style="bridge")}, seeds=(0,),
        pretrain=PretrainConfig(size=6, args=("--trainer.max_steps", "3")),
    )  # fmt: skip
    Runner(config, log=lambda _: None).run()
    model = {args[args.index("--model.init_args.hf_output_dir") + 1]: args[args.index("--model.init_args.model_path")
                                                                            + 1] for args in calls}  # fmt: skip
    out = tmp_path / "out"
    pretrained = str(out / "base_models" / "seed_0_pretrained")
    assert model[pretrained] == str(out / "base_models" / "seed_0")  # from the fresh base model
    assert model[str(out / "vanilla" / "seed_0" / "sft_model")] == pretrained  # both methods start from it
    assert model[str(out / "bridge" / "seed_0" / "sft_model")] == pretrained
    assert fake_stages.count("seed_0_pretrained") == 1 and calls[0][-2:] == ["--trainer.max_steps", "3"]
    assert (out / "data" / "pretrain" / ".stage.json").is_file()
    Runner(config, log=lambda _: None).run()  # everything exists: nothing is redone
    assert fake_stages.count("seed_0_pretrained") == 1


def test_rejection_method_samples_its_source_sft_model_and_fine_tunes_it(tmp_path, fake_stages, monkeypatch):
    import dataclasses

    import bridge_pl.analysis.rejection as rejection
    from bridge_pl.experiment import MethodConfig, RejectionConfig, Runner

    calls: list[list[str]] = []
    fit = Runner._fit
    monkeypatch.setattr(Runner, "_fit", lambda self, args: (calls.append(args), fit(self, args)))
    sampled = []

    def rejection_sample(model, prompts, out, *, size, settings, seed, engine_kind, overwrite):
        sampled.append((model, prompts, size, settings.per_prompt, seed))
        Path(out).mkdir(parents=True)
        (Path(out) / "data.jsonl").write_text("{}\n")
        fake_stages.append("rejection")
        return {"rows": 1, "prompts_kept": 1, "prompts_sampled": size}

    monkeypatch.setattr(rejection, "rejection_sample", rejection_sample)
    rs = MethodConfig(rejection=RejectionConfig(source="vanilla", size=5, per_prompt=2),
                      sft_args=("--trainer.max_steps", "7"))  # fmt: skip
    config = dataclasses.replace(_fake_config(tmp_path), methods={"rs": rs, "vanilla": MethodConfig()})
    Runner(config, log=lambda _: None).run()
    out = tmp_path / "out"
    # rs runs first: the vanilla SFT model it samples is trained for it, then reused by vanilla's own run.
    assert fake_stages[:4] == ["base", "sft_model", "rejection", "sft_model"]
    assert fake_stages.count("sft_model") == 2
    assert sampled == [(str(out / "vanilla" / "seed_0" / "sft_model"), str(out / "data" / "rl_train"), 5, 2, 0)]
    rs_fit = next(a for a in calls if str(out / "rs" / "seed_0" / "sft_model") in a)
    assert rs_fit[rs_fit.index("--model.init_args.model_path") + 1] == str(out / "vanilla" / "seed_0" / "sft_model")
    assert rs_fit[rs_fit.index("--data.init_args.train_path") + 1] == str(out / "rs" / "seed_0" / "sft_data")
    assert rs_fit[-2:] == ["--trainer.max_steps", "7"]
    fake_stages.clear()
    Runner(config, log=lambda _: None).run()
    assert fake_stages == []


def test_sets_take_a_size_and_bad_rejection_methods_fail_at_load(tmp_path):
    from bridge_pl.experiment import set_plan

    big = set_plan({"split": "tiny_test_id", "size": 2000})
    assert big.size == 2000 and big.seed == set_plan("tiny_test_id").seed
    settings = yaml.safe_load(micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path).read_text())
    cases = {
        "sets.test_id: give a split preset": {"sets": settings["sets"] | {"test_id": {"size": 9}}},
        "source='bridge' must be one of the written-answer methods": {
            "methods": {"vanilla": {}, "rs": {"rejection": {"source": "bridge"}}}},
        "prompts='test_id' must be a training set": {
            "methods": {"vanilla": {}, "rs": {"rejection": {"prompts": "test_id"}}}},
        "unknown key.*methods.rs.rejection.alpha": {"methods": {"vanilla": {}, "rs": {"rejection": {"alpha": 1}}}},
        "alpha_min=0.9, alpha_max=0.2": {
            "methods": {"vanilla": {}, "rs": {"rejection": {"alpha_min": 0.9, "alpha_max": 0.2}}}},
    }  # fmt: skip
    for message, change in cases.items():
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(settings | change))
        with pytest.raises(ValueError, match=message):
            load_config(tmp_path / "bad.yaml")


def test_bad_probe_settings_fail_at_load(tmp_path):
    settings = yaml.safe_load(micro(CONFIGS / "experiments" / "tiny.yaml", tmp_path).read_text())
    cases = {
        r"probe: target_alpha=\(0.8, 0.2\)": {"target_alpha": [0.8, 0.2]},
        r"target_alpha=\(0.5,\)": {"target_alpha": [0.5]},
        "target_alpha=0.5: give": {"target_alpha": 0.5},
        "probe: target_pool=2: screen at least size=3 prompts; screen_generations=1: at least 2": {
            "target_pool": 2, "screen_generations": 1},
        "probe: parameters='embeddings'": {"parameters": "embeddings"},
    }  # fmt: skip
    for message, change in cases.items():
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(settings | {"probe": settings["probe"] | change}))
        with pytest.raises(ValueError, match=message):
            load_config(tmp_path / "bad.yaml")


def test_influence_targets_are_screened_once_on_the_control_and_shared_by_every_method(
    tmp_path, fake_stages, monkeypatch
):
    import dataclasses

    import bridge_pl.analysis.measure as measure
    from bridge_pl.experiment import MethodConfig, ProbeConfig, run_experiment

    screened_on, targets = [], {}

    def screen_targets(model, target_path, *, pool, seed, **kwargs):
        screened_on.append((Path(model).parts[-3], pool, seed))
        fake_stages.append("screen")
        return [0.0, 0.5, 1.0, 0.25, 0.75, 0.3][:pool]

    def probe_model(model, *args, target_index=None, **kwargs):
        targets[Path(model).parts[-3]] = target_index
        fake_stages.append("probe")
        return _fake_probe(target_index)

    monkeypatch.setattr(measure, "screen_targets", screen_targets)
    monkeypatch.setattr(measure, "probe_model", probe_model)
    config = _fake_config(tmp_path)
    probe = dataclasses.replace(config.probe, target_alpha=(0.25, 0.75), target_pool=6, size=3)
    methods = {"bridge": MethodConfig(style="bridge"), "vanilla": config.methods["vanilla"]}  # the control last
    config = dataclasses.replace(config, methods=methods, probe=probe)
    run_experiment(config, log=lambda _: None)
    # bridge's probe needs the control's SFT model: it is trained first, and screened once
    assert fake_stages[:6] == ["base", "sft_model", "sft_eval", "sft_model", "screen", "probe"]
    assert fake_stages.count("screen") == 1 and screened_on == [("vanilla", 6, 2)]  # seed 0 + 2: rollouts of its own
    assert targets == {"bridge": [1, 3, 4], "vanilla": [1, 3, 4]}  # the first 3 with alpha in [0.25, 0.75]
    fake_stages.clear()
    run_experiment(config, log=lambda _: None)
    assert fake_stages == []
    with pytest.raises(ValueError, match="target_alpha"):  # another window: the screening is stale, refused
        run_experiment(dataclasses.replace(config, probe=dataclasses.replace(probe, target_alpha=(0.0, 0.5))),
                       log=lambda _: None)  # fmt: skip
    with pytest.raises(RuntimeError, match="widen probe.target_alpha or raise probe.target_pool"):
        empty = dataclasses.replace(probe, target_alpha=(0.9, 0.95))
        run_experiment(dataclasses.replace(config, probe=empty, out_dir=str(tmp_path / "other")), log=lambda _: None)
    # the new settings enter a probe's fingerprint only where they take effect: probes finished before they existed
    # stay finished, and an unused one makes nothing stale
    original = {"prompts", "targets", "size", "num_generations", "max_new_tokens", "influence"}
    assert set(ProbeConfig().settings()) == set(ProbeConfig(target_pool=9, screen_generations=3).settings()) == original
    assert set(ProbeConfig(target_alpha=(0.1, 0.9), influence=False, parameters="all").settings()) == original
    assert set(ProbeConfig(target_alpha=(0.1, 0.9)).settings()) == original | {"target_alpha", "target_pool",
                                                                                "screen_generations"}  # fmt: skip


def test_no_screening_without_the_influence_and_a_marker_without_its_output_is_redone(tmp_path, fake_stages):
    import dataclasses

    from bridge_pl.experiment import run_experiment

    config = _fake_config(tmp_path)
    config = dataclasses.replace(config, probe=dataclasses.replace(config.probe, target_alpha=(0.0, 1.0),
                                                                   target_pool=5, influence=False))  # fmt: skip
    run_experiment(config, log=lambda _: None)
    assert "screen" not in fake_stages and not (tmp_path / "out" / "probe_targets").exists()
    fake_stages.clear()
    (tmp_path / "out" / "vanilla" / "seed_0" / "probe.json").unlink()  # its marker stays
    run_experiment(config, log=lambda _: None)
    assert fake_stages == ["probe"]


def test_the_report_says_when_probes_were_made_with_different_target_screenings(tmp_path):
    from bridge_pl.experiment import _targets_markdown

    config = _fake_config(tmp_path)
    screening = {"on": "vanilla", "parameters": "all", "target_alpha": [0.25, 0.75], "target_pool": 200,
                 "screen_generations": 16, "size": 64}  # fmt: skip
    runs = {
        "vanilla/seed_0": {"seed": 0, "probe": {"influence": {"targets": {"count": 27, "screening": screening}}}},
        "bridge/seed_0": {"seed": 0, "probe": {"influence": {"targets": {"count": 27, "screening": screening}}}},
    }
    (text,) = _targets_markdown(config, runs)[1:]
    assert "in [0.25, 0.75]" in text and "every method: 27 (seed 0)" in text and "all parameters" in text
    runs["bridge/seed_1"] = {"seed": 1, "probe": {"influence": {"total": 0.0}}}  # made before targets were recorded
    (text,) = _targets_markdown(config, runs)[1:]
    assert "different target screenings (unscreened: bridge/seed_1)" in text and "--force" in text
