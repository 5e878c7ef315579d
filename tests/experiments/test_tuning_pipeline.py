"""The tuning pipeline: its two-stage search, compiled YAML up to date, and a run under kfp.local."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from pipelines.wukong_tuning_pipeline import COMPILED, PARALLELISM, compile_pipeline, run_locally
from wukong.config import ConfigError, load_config
from wukong.data.errors import DataError
from wukong.experiments.space import SearchSpace
from wukong.experiments.trials import TrialSpec, run_trial_keeping_failures
from wukong.experiments.tune import configuration_key
from wukong.experiments.tune_stages import StagedSearch

from .conftest import QUICK

SPACE = """\
train.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
models:
  dlrm:
    model.dlrm.top_mlp: {choice: [[16], [32], [48]]}
  dcnv2:
    model.dcnv2.num_cross_layers: {int: [1, 3]}
"""


def search(**changes) -> StagedSearch:
    settings = dict(data="d", models=("dlrm", "dcnv2"), space=SPACE, trials=5, startup_trials=3, preset="tiny")
    return StagedSearch(**{**settings, **changes})


def finished(spec: TrialSpec, auc: float) -> dict:
    """A finished trial's record, as the trial step returns it (only what the search reads)."""
    valid = {"auc": auc, "logloss": 1 - auc}
    return {"id": spec.id, "status": "ok", **spec.identity(), **spec.meta, "valid": valid, "steps": 10,
            "mflops_per_example": 0.1, "wall_seconds": 1.0}  # fmt: skip


def score(spec: TrialSpec) -> float:
    """A made-up validation AUC that depends on the trial's parameters only."""
    params = spec.meta["params"]
    return 0.9 - abs(math.log10(params["train.learning_rate"]) + 3) / 10 + len(str(params)) / 1e4


class FakeRunner:
    """Stands in for the local tuner's runner: each trial finishes at once with its :func:`score`."""

    def __init__(self) -> None:
        self.done: dict[str, dict] = {}
        self.journal = SimpleNamespace(records=lambda: dict(self.done))

    def run(self, specs: list[TrialSpec]) -> None:
        self.done.update({spec.id: finished(spec, score(spec)) for spec in specs})


@pytest.mark.parametrize("trials", [5, 6])
def test_the_stages_draw_what_wukong_tune_draws(trials: int, teacher_data: str, tmp_path: Path) -> None:
    staged = search(data=teacher_data, trials=trials)
    first = staged.plan(1)
    second = staged.plan(2, [finished(spec, score(spec)) for spec in first])
    assert [s.id for s in first] == [f"{m}-trial-000{n}" for m in ("dlrm", "dcnv2") for n in range(3)]
    assert [s.id for s in second] == [f"{m}-trial-000{n}" for m in ("dlrm", "dcnv2") for n in range(3, trials)]
    for model in ("dlrm", "dcnv2"):
        local = staged.tuner(model)
        local.output = tmp_path / model
        local.runner = FakeRunner()  # `wukong tune --parallel 3 --startup-trials 3 --trials 5|6`, runs faked
        local.run()
        drawn = [r["params"] for r in sorted(local.runner.done.values(), key=lambda r: r["trial"])]
        assert drawn == [s.meta["params"] for s in [*first, *second] if s.model == model]
        assert len({configuration_key(p) for p in drawn}) == trials  # no configuration tried twice


def test_a_failed_startup_trial_leaves_stage_two_to_tpe(monkeypatch: pytest.MonkeyPatch) -> None:
    modelled = []
    sample_relative = optuna.samplers.TPESampler.sample_relative

    def spy(self, study, trial, space):
        params = sample_relative(self, study, trial, space)
        modelled.append(bool(params))  # {} while TPE is still in its random start-up phase
        return params

    monkeypatch.setattr(optuna.samplers.TPESampler, "sample_relative", spy)
    staged = search(models=("dlrm",))
    records = [finished(spec, score(spec)) for spec in staged.plan(1)]
    records[0] = {**records[0], "status": "failed", "error": "RuntimeError: diverged"}
    modelled.clear()
    staged.plan(2, records)
    assert modelled and all(modelled)


def test_bad_stages_are_refused() -> None:
    with pytest.raises(ConfigError, match="startup_trials < trials"):
        search(trials=3, startup_trials=3)
    with pytest.raises(ConfigError, match="each model once"):
        search(models=("dlrm", "dlrm"))
    with pytest.raises(ConfigError, match="not found"):
        search(space="no-such-space")
    with pytest.raises(DataError, match="stage 2 of dlrm needs its 3 stage-1 records, got 0"):
        search().plan(2, [])


def test_report_ranks_each_model_on_validation_and_writes_its_preset(tmp_path: Path) -> None:
    staged = search()
    first = staged.plan(1)
    aucs = {"dlrm-trial-0001": 0.9, "dcnv2-trial-0000": 0.8}
    records = [finished(spec, aucs.get(spec.id, 0.5)) for spec in first]
    records += [finished(spec, 0.4) for spec in staged.plan(2, records)]
    records[0] = {**records[0], "status": "failed", "error": "Traceback\nRuntimeError: diverged\n"}
    report = staged.report(records)
    assert {m: b["id"] for m, b in report.bests.items()} == {"dlrm": "dlrm-trial-0001", "dcnv2": "dcnv2-trial-0000"}
    (tmp_path / "best.yaml").write_text(report.files["dlrm/best.yaml"])
    best = load_config(str(tmp_path / "best.yaml")).model
    assert (best.name, best.dlrm.top_mlp) == ("dlrm", yaml.safe_load(first[1].meta["params"]["model.dlrm.top_mlp"]))
    assert len(report.files["dlrm/trials.jsonl"].splitlines()) == 5
    assert "failed" in report.files["dlrm/trials.md"] and report.markdown.startswith("# Tuning summary")
    with pytest.raises(DataError, match=r"every trial of dlrm failed \(RuntimeError: diverged\)"):
        staged.report([{**r, "status": "failed", "error": "RuntimeError: diverged"} for r in records])


def test_a_space_by_name_path_or_text(tmp_path: Path) -> None:
    by_name = SearchSpace.load("recipe", "dlrm")
    assert by_name.source.endswith("configs/spaces/recipe.yaml")
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    assert SearchSpace.load(path, "dlrm").parameters == SearchSpace.load(SPACE, "dlrm").parameters
    bare = tmp_path / "space"  # an existing file, whatever its name
    bare.write_text(SPACE)
    assert SearchSpace.load(bare, "dlrm").parameters == SearchSpace.load(SPACE, "dlrm").parameters
    with pytest.raises(ConfigError, match="not valid YAML"):
        SearchSpace.load("a: [\nb", "dlrm")


def test_a_failed_trial_becomes_a_failed_record(teacher_data: str, tmp_path: Path) -> None:
    params = {"model.dlrm.top_mlp": "[-1]"}
    spec = TrialSpec("bad", "dlrm", "tiny", ("model.dlrm.top_mlp=[-1]",), meta={"trial": 0, "params": params})
    record = run_trial_keeping_failures(spec, teacher_data, str(tmp_path / "bad"))
    assert record["status"] == "failed" and record["trial"] == 0
    assert "exited with status 2" in record["error"] and "top_mlp" in record["error"]  # the cause, not just a code
    assert json.loads((tmp_path / "bad" / "trial.json").read_text())["error"] == record["error"]
    tuner = search(models=("dlrm",), space="{model.dlrm.top_mlp: {choice: [[16], [32]]}}").tuner("dlrm")
    assert tuner.ranked([record]) == [] and "| failed " in tuner.table([record])


def test_compiled_tuning_pipeline_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "fresh.yaml").read_text()
    assert fresh == COMPILED.read_text(), "pipelines/wukong_tuning_pipeline.yaml is stale: run `make pipeline`"
    spec, _ = list(yaml.safe_load_all(fresh))
    tasks = spec["root"]["dag"]["tasks"]
    assert {"ingest", "tune-plan", "tune-plan-2", "for-loop-1", "for-loop-2", "tune-report"} <= set(tasks)
    assert [tasks[f"for-loop-{n}"]["iteratorPolicy"]["parallelismLimit"] for n in (1, 2)] == [PARALLELISM] * 2
    records = tasks["tune-plan-2"]["inputs"]["parameters"]["records"]["taskOutputParameter"]
    assert records["producerTask"] == "for-loop-1"  # stage 2 is drawn knowing every stage-1 trial
    report = tasks["tune-report"]["inputs"]["parameters"]
    producers = [report[k]["taskOutputParameter"]["producerTask"] for k in ("first", "second")]
    assert producers == ["for-loop-1", "for-loop-2"]


@pytest.mark.slow
def test_a_search_under_kfp_local(tmp_path: Path) -> None:
    printer = builtins.print
    bests = json.loads(
        run_locally(
            tmp_path,
            source="teacher",
            rows=3000,
            models=["dlrm"],
            space="model.dlrm.top_mlp: {choice: [[16], [32], [48]]}\n",
            trials=3,
            startup_trials=2,
            preset="tiny",
            overrides=QUICK,
        )
    )
    assert builtins.print is printer, "kfp.local's indented print leaked out of the run"
    records = {r["id"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/*/trial.json"))}
    assert sorted(records) == ["dlrm-trial-0000", "dlrm-trial-0001", "dlrm-trial-0002"]
    assert len({r["params"]["model.dlrm.top_mlp"] for r in records.values()}) == 3  # every choice once
    assert all("test" not in r and "auc" in r["valid"] for r in records.values())  # validation only
    best = max(records.values(), key=lambda r: r["valid"]["auc"])
    assert bests["dlrm"]["id"] == best["id"]
    tuned = next((tmp_path / "kfp").glob("*/tune-report/tuned"))
    preset = load_config(str(tuned / "dlrm" / "best.yaml"))
    assert preset.model.dlrm.top_mlp == yaml.safe_load(best["params"]["model.dlrm.top_mlp"])
    markdown = next((tmp_path / "kfp").glob("*/tune-report/summary")).read_text()
    summary_rows = [line for line in markdown.splitlines() if line.startswith("| dlrm ")]
    assert "# Tuning summary" in markdown and len(summary_rows) == 1 and best["id"] in summary_rows[0]
    assert "## Tuning dlrm" in markdown and markdown.count("| [") == 3  # every trial's row under it
