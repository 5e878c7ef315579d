"""The Kubeflow pipeline: the whole run under kfp.local, each component's function, the compiled YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components import evaluate, ingest, register, train
from pipelines.graph import PARALLELISM
from pipelines.wukong_pipeline import COMPILED, compile_pipeline
from wukong.cli import main
from wukong.data.errors import DataError
from wukong.pipeline import steps
from wukong.registry import open_registry

QUICK = ["train.max_steps=60", "train.batch_size=256"]


@pytest.mark.slow
def test_whole_pipeline_under_kfp_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main job's command, as `make demo` runs it: a short, readable screen (one line per step, then
    the summary); the steps' own output (the KFP executor's JSON, training's log) in a log file under
    the workdir; then the registry and the model found without being named."""
    workdir = tmp_path / "runs" / "demo"
    sets = [item for override in QUICK for item in ("--set", override)]
    argv = ["pipeline", "run", "--local", "--workdir", str(workdir), "--rows", "20000", *sets, "--min-auc", "0.5"]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    lines = shown.splitlines()
    assert len(lines) < 40
    for step in ("ingest", "train", "evaluate", "register"):
        assert sum(line.startswith(f"{step} ") for line in lines) == 1, shown
    assert "KFP Executor" not in shown and "executor_input" not in shown
    logs = list((workdir / "logs").glob("pipeline-*.log"))
    assert len(logs) == 1 and f"log         {logs[0]}" in shown
    log = logs[0].read_text()
    assert "[KFP Executor" in log and "Got executor_input" in log and "finished with status SUCCESS" in log
    assert "\x1b[" not in log  # colour codes stay on the terminal

    registry = open_registry(str(workdir / "registry"))
    versions = registry.versions("wukong-ctr")
    assert [v.version for v in versions] == [1] and registry.production("wukong-ctr").version == 1
    assert f"AUC {versions[0].metrics['auc']:.4f}" in shown
    assert versions[0].lineage["dataset"] == str(workdir / "dataset")
    assert "version 1 registered; promoted to production" in shown  # nothing in production before
    train_rows = int(re.search(r"train ([\d,]+) ·", shown)[1].replace(",", ""))
    assert train_rows > 15_000
    run = re.search(r"report\s+(\S+)/report-test.html", shown)[1]
    report = Path(run, "report-test.html").read_text()
    assert report.count('src="data:image/png;base64,') == 3 and "<script" not in report

    # Right after the demo, from the folder it ran in: no --registry, no --data, no --output needed.
    monkeypatch.delenv("WUKONG_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["registry", "list"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"wukong-ctr\s+1\s+production", captured.out)
    assert captured.err.startswith("wukong registry list: registry runs/demo/registry ")
    Path(run, "eval-test.json").unlink()
    assert main(["evaluate", "--model", run]) == 0
    err = capsys.readouterr().err
    assert f"data {workdir / 'dataset'} (the dataset the model was trained on)" in err
    evaluation = json.loads(Path(run, "eval-test.json").read_text())
    assert evaluation["auc"] == pytest.approx(versions[0].metrics["auc"])


@pytest.mark.slow
def test_a_failing_step_shows_its_last_lines_and_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-day.tsv"
    argv = ["pipeline", "run", "--local", "--workdir", str(tmp_path), "--source", "criteo", "--input", str(missing)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("ingest "))
    assert "FAILED" in lines[failed]
    tail = lines[failed + 1 :]
    assert 1 < len(tail) <= 15 and f"{missing}: input does not exist" in tail[-1]
    assert not any(line.startswith(("train ", "evaluate ", "register ")) for line in lines)
    log = next((tmp_path / "logs").glob("pipeline-*.log"))
    assert captured.err.strip() == f"wukong pipeline run: step ingest failed; its output is in {log}"


def fake_output(kind, tmp_path: Path, name: str):
    path = tmp_path / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return kind(name=name, uri=str(path), metadata={})


@pytest.mark.slow
def test_component_functions_chain(tmp_path: Path) -> None:
    dataset = fake_output(Dataset, tmp_path, "dataset")
    rows = ingest.python_func(
        source="synthetic", input_uri="", dataset_uri=str(tmp_path / "ds"), rows=8_000, seed=1, dataset=dataset
    )
    assert rows == dataset.metadata["rows"]["train"] and dataset.metadata["uri"] == str(tmp_path / "ds")
    assert json.loads(Path(dataset.path).read_text())["run_id"] == dataset.metadata["run_id"]

    model, metrics = fake_output(Model, tmp_path, "model"), fake_output(Metrics, tmp_path, "metrics")
    out = train.python_func(
        dataset=dataset,
        model_name="dcnv2",
        preset="tiny",
        overrides=QUICK,
        runs_root=str(tmp_path / "runs"),
        run_id="r1",
        launcher="local",
        nodes=1,
        nproc_per_node=1,
        gpus_per_node=0,
        model=model,
        metrics=metrics,
    )
    assert out == str(tmp_path / "runs" / "r1") == model.metadata["uri"]
    assert model.metadata["model"] == "dcnv2" and "valid_auc" in metrics.metadata

    eval_metrics = fake_output(Metrics, tmp_path, "eval")
    classification = fake_output(ClassificationMetrics, tmp_path, "cls")
    report = fake_output(HTML, tmp_path, "report")
    summary = fake_output(Markdown, tmp_path, "summary")
    auc = evaluate.python_func(
        dataset=dataset,
        model=model,
        split="test",
        metrics=eval_metrics,
        classification=classification,
        report=report,
        summary=summary,
    )
    assert f"| auc | {auc:.4f} |" in Path(summary.path).read_text()
    assert auc == pytest.approx(eval_metrics.metadata["auc"])
    assert len(classification.metadata["confidenceMetrics"]) > 5
    matrix = classification.metadata["confusionMatrix"]["rows"]
    assert sum(sum(r["row"]) for r in matrix) == eval_metrics.metadata["rows"]
    assert "<img" in Path(report.path).read_text()

    result = json.loads(
        register.python_func(
            dataset=dataset,
            model=model,
            split="test",
            registry_uri=str(tmp_path / "reg"),
            registered_name="ctr",
            min_auc=0.0,
            tolerance=0.0,
            pipeline_run="p1",
        )
    )
    assert result["version"] == 1 and result["promoted"] is True
    assert open_registry(str(tmp_path / "reg")).get("ctr", 1).lineage["pipeline_run"] == "p1"


def training_output(folder: Path, seed: int) -> str:
    import torch

    folder.mkdir(parents=True)
    torch.save({"w": torch.full((2,), float(seed))}, folder / "model.pt")
    (folder / "model_card.json").write_text(json.dumps({"model": "wukong"}))
    return str(folder)


def test_promotion_gate_in_the_register_step(tmp_path: Path) -> None:
    registry = str(tmp_path / "reg")
    gate = dict(registry_uri=registry, registered_name="ctr", min_auc=0.6, tolerance=0.01, export=False)  # no model
    first = steps.register(training_output(tmp_path / "a", 1), {"auc": 0.75}, **gate)
    worse = steps.register(training_output(tmp_path / "b", 2), {"auc": 0.70}, **gate)
    better = steps.register(training_output(tmp_path / "c", 3), {"auc": 0.80}, **gate)
    assert (first["version"], first["promoted"]) == (1, True)
    assert (worse["version"], worse["promoted"]) == (2, False) and "worse than production" in worse["reason"]
    assert (better["version"], better["promoted"]) == (3, True)
    assert better["production_before"]["version"] == 1
    assert open_registry(registry).production("ctr").version == 3


def test_pytorchjob_launcher_without_the_kubernetes_module_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="launcher"):
        steps.train("d", str(tmp_path), "wukong", "tiny", launcher="slurm")


def test_compiled_pipeline_is_up_to_date_and_holds_no_secrets(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "fresh.yaml").read_text()
    assert fresh == COMPILED.read_text(), "pipelines/wukong_training_pipeline.yaml is stale: run `make pipeline`"
    documents = list(yaml.safe_load_all(fresh))
    spec, platform = documents[0], documents[1]
    assert set(spec["root"]["dag"]["tasks"]) == {"warm-start", "condition-branches-1"}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in executors.values():
        secrets = executor["secretAsEnv"]
        assert secrets[0]["secretName"] == "wukong-s3-credentials"
        assert {k["envVar"] for k in secrets[0]["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    # No credential values anywhere: no access-key-shaped strings, no well-known test or default secrets.
    assert not re.search(r"AKIA[0-9A-Z]{16}|minioadmin|aws_secret_access_key\s*[:=]\s*\S", fresh, re.IGNORECASE)
    assert "testing" not in fresh


def test_compiled_pipeline_fans_the_ingest_out_when_asked() -> None:
    """ingest_tasks > 0: plan, three ParallelFor loops, commit, and training on the committed dataset;
    else the one ingest step; the run's output is the training run of the branch that ran."""
    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    components = spec["components"]

    def tasks(component: str) -> dict:
        return components[component]["dag"]["tasks"]

    branches = {t["taskInfo"]["name"]: t for t in tasks("comp-condition-branches-1").values()}
    assert set(branches) == {"fanned-out-ingest", "one-ingest-step"}
    condition = branches["fanned-out-ingest"]["triggerPolicy"]["condition"]
    assert condition == "int(inputs.parameter_values['pipelinechannel--ingest_tasks']) > 0"
    assert branches["one-ingest-step"]["triggerPolicy"]["condition"] == f"!({condition})"
    fanned = tasks(branches["fanned-out-ingest"]["componentRef"]["name"])
    one = tasks(branches["one-ingest-step"]["componentRef"]["name"])
    names = {task["taskInfo"]["name"] for task in fanned.values()}
    assert names >= {"ingest-plan", "offsets", "vocabulary", "ingest-commit", "train", "evaluate", "auc-above-minimum"}
    loops = {t["taskInfo"]["name"]: t for t in fanned.values() if "iteratorPolicy" in t}
    assert set(loops) == {"scan-parts", "count-parts", "encode-parts"}
    assert all(loop["iteratorPolicy"]["parallelismLimit"] == PARALLELISM for loop in loops.values())
    assert fanned["ingest-plan"]["inputs"]["parameters"]["tasks"] == {
        "componentInputParameter": "pipelinechannel--ingest_tasks"
    }
    assert "ingest" not in fanned and "ingest-plan" not in one
    assert {task["taskInfo"]["name"] for task in one.values()} == {"ingest", "train", "evaluate", "auc-above-minimum"}
    # Training reads the dataset of its own branch's ingest.
    for branch, producer in ((fanned, "ingest-commit"), (one, "ingest")):
        trainer = next(t for t in branch.values() if t["taskInfo"]["name"] == "train")
        assert trainer["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]["producerTask"] == producer
    output = spec["root"]["dag"]["outputs"]["parameters"]["Output"]["valueFromParameter"]
    assert output["producerSubtask"] == "condition-branches-1"


@pytest.mark.parametrize(
    ("registered", "by_this_run", "production", "expected"),
    [
        (None, False, None, "not registered (AUC below the minimum)"),
        (3, True, 3, "version 3 registered; promoted to production"),
        (3, True, 2, "version 3 registered; not promoted (production stays version 2)"),
        (2, False, 2, "identical to version 2, registered by an earlier run (is production)"),
    ],
)
def test_summary_reports_the_registry_outcome(registered, by_this_run, production, expected) -> None:
    from wukong.pipeline.local import format_summary

    summary = {
        "dataset": {"uri": "d", "rows": {"train": 10}},
        "model": {"name": "wukong", "mflops_per_example": 1.0, "steps": 5, "output": "o"},
        "test": {"auc": 0.8, "logloss": 0.5, "ne": 0.9, "rows": 10},
        "production_before": None,
        "registered_version": registered,
        "registered_by_this_run": by_this_run,
        "production_now": production,
        "report": "r.html",
    }
    assert f"  registry    {expected}" in format_summary(summary)


@pytest.mark.slow
def test_gate_reevaluates_production_on_the_candidates_split(tmp_path: Path) -> None:
    """Production's stored AUC came from other data; the gate must compare on the same split."""
    import shutil

    import torch

    dataset = fake_output(Dataset, tmp_path, "dataset")
    ingest.python_func(
        source="synthetic", input_uri="", dataset_uri=str(tmp_path / "ds"), rows=6_000, seed=3, dataset=dataset
    )
    run = str(tmp_path / "runs" / "a")
    steps.train(str(tmp_path / "ds"), run, "dlrm", "tiny", QUICK, nproc_per_node=1)
    actual = steps.evaluate(run, str(tmp_path / "ds"))["auc"]
    registry = str(tmp_path / "reg")
    first = steps.register(run, {"auc": 0.99}, registry, "ctr", 0.0, 0.01)  # stored metrics from "other data"
    assert first["promoted"]
    candidate = tmp_path / "runs" / "b"
    shutil.copytree(run, candidate)
    state = torch.load(candidate / "model.pt", weights_only=True)
    name = next(k for k in state if k.endswith("bias"))
    state[name] = state[name] + 1e-6  # a different model file, the same quality
    torch.save(state, candidate / "model.pt")
    second = steps.register(
        str(candidate), {"auc": actual}, registry, "ctr", 0.0, 0.01, dataset_uri=str(tmp_path / "ds"), split="test"
    )
    assert second["production_auc_compared"] == pytest.approx(actual, abs=1e-6)
    assert second["promoted"] and "re-evaluated on this test split" in second["reason"]
    # Without the dataset, only production's stored (other-data) AUC is there to compare: blocked.
    steps.register(run, {"auc": 0.99}, str(tmp_path / "reg2"), "ctr", 0.0, 0.01)
    stale = steps.register(str(candidate), {"auc": actual}, str(tmp_path / "reg2"), "ctr", 0.0, 0.01)
    assert not stale["promoted"] and "its registered metrics" in stale["reason"]
