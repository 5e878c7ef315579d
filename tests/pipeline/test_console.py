"""What a local pipeline run shows: one line per step, the steps' output in a log file, a failing step's tail.

(No ``from __future__ import annotations`` here: KFP reads the components' annotations as types.)
"""

import io
import json
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Output

from pipelines.wukong_pipeline import wukong_training_pipeline
from wukong.pipeline.console import StepFailed, quiet_pipeline
from wukong.pipeline.local import describe_step, skip_lines, start_local, step_names


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def count(n: int, rows: Output[Dataset]) -> int:
    print("counting rows: a line for the log only")
    rows.metadata["rows"] = n
    with open(rows.path, "w") as f:
        f.write(str(n))
    return 2 * n


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def check(doubled: int) -> str:
    for i in range(40):
        print(f"checking line {i}")
    if doubled > 100:
        raise ValueError(f"{doubled} is too many")
    return "fine"


@dsl.pipeline(name="tiny")
def tiny(n: int) -> int:
    counted = count(n=n)
    with dsl.If(counted.outputs["Output"] >= 10, name="enough-rows"):
        check(doubled=counted.outputs["Output"])
    return counted.outputs["Output"]


def describe(task: str, outputs: dict) -> str:
    if task == "count":
        return f"{outputs['artifacts']['rows']['rows']:.0f} rows, doubled {outputs['parameters']['Output']}"
    return f"said {outputs['parameters']['Output']}"


def run_tiny(tmp_path: Path, n: int, verbose: bool = False) -> tuple[str, Path]:
    start_local(tmp_path / "kfp")
    out, log = io.StringIO(), tmp_path / "logs" / "run.log"
    with quiet_pipeline(log, tmp_path / "kfp", describe, {"condition-1": "check skipped: too few"}, out, verbose):
        assert tiny(n=n).output == 2 * n
    return out.getvalue(), log


@pytest.mark.slow
def test_one_line_per_step_and_the_rest_in_the_log(tmp_path: Path) -> None:
    shown, log = run_tiny(tmp_path, 20)
    lines = shown.splitlines()
    assert [line.split()[0] for line in lines] == ["count", "check"]
    assert lines[0].startswith("count     20 rows, doubled 40  (") and lines[0].endswith(" s)")
    assert lines[1].startswith("check     said fine  (")
    text = log.read_text()
    assert "counting rows: a line for the log only" in text and "checking line 39" in text
    assert "[KFP Executor" in text


@pytest.mark.slow
def test_a_skipped_step_gets_its_line_and_verbose_shows_everything(tmp_path: Path) -> None:
    shown, log = run_tiny(tmp_path, 3, verbose=True)
    assert "check     skipped: too few\n" in shown
    assert "counting rows: a line for the log only" in shown  # live, as well as in the log
    assert "counting rows" in log.read_text()


@pytest.mark.slow
def test_a_failing_step_shows_its_last_lines(tmp_path: Path) -> None:
    start_local(tmp_path / "kfp")
    out, log = io.StringIO(), tmp_path / "run.log"
    with (
        pytest.raises(StepFailed, match="step check failed") as failure,
        quiet_pipeline(log, tmp_path / "kfp", describe, out=out),
    ):
        tiny(n=60)
    assert failure.value.step == "check" and failure.value.log_path == log
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("count ") and lines[1].startswith("check     FAILED after ") and str(log) in lines[1]
    tail = lines[2:]
    assert len(tail) == 15 and tail[-1] == "  | ValueError: 120 is too many"
    assert not any("checking line 0" in line for line in tail)  # the tail, not the whole output
    assert "checking line 0" in log.read_text()


def test_skip_lines_find_the_registration_condition_by_its_name() -> None:
    """One register condition after each form of the ingest (nested in the branch that runs)."""
    skipped = skip_lines(wukong_training_pipeline)
    assert len(skipped) == 2 and all(key.startswith("condition-") for key in skipped)
    assert set(skipped.values()) == {"register skipped: test AUC below the minimum (--min-auc)"}


def test_steps_are_named_by_their_display_names() -> None:
    names = step_names(wukong_training_pipeline)
    assert {names[key] for key in ("train", "train-2")} == {"train"}
    loops = sorted(names[key] for key in names if key.startswith("ingest-parts"))
    assert loops == ["count", "encode", "scan"]
    assert {names[key] for key in names if key.startswith("ingest-gather")} == {"offsets", "vocabulary"}
    assert names["ingest-plan"] == "ingest-plan" and names["ingest-commit"] == "ingest-commit"


def test_step_lines_of_the_training_pipeline() -> None:
    ingest = {
        "parameters": {"Output": 800},
        "artifacts": {
            "dataset": {
                "uri": "s3://b/ds",
                "rows": {"train": 800, "valid": 100, "test": 100},
                "rows_rejected": 2,
                "features": {"dense": 13, "sparse": 26},
            }
        },
    }
    assert describe_step("ingest", ingest) == (
        "train 800 · valid 100 · test 100 rows, 13 dense + 26 sparse features, 2 rejected -> s3://b/ds"
    )
    train = {
        "parameters": {"Output": "s3://b/runs/1"},
        "artifacts": {
            "model": {"uri": "s3://b/runs/1", "model": "dlrm", "mflops_per_example": 0.5, "steps": 60.0},
            "metrics": {"valid_auc": 0.71234},
        },
    }
    assert describe_step("train", train) == "dlrm, 0.50 MFLOP/example, 60 steps, valid AUC 0.7123 -> s3://b/runs/1"
    evaluate = {"parameters": {"Output": 0.7}, "artifacts": {"metrics": {"logloss": 0.5}}}
    assert describe_step("evaluate", evaluate) == "test AUC 0.7000, LogLoss 0.5000"
    result = {"name": "ctr", "version": 3, "promoted": False, "reason": "AUC 0.70 is worse than production's 0.72"}
    register = {"parameters": {"Output": json.dumps(result)}, "artifacts": {}}
    assert describe_step("register", register) == (
        "ctr version 3 registered, not promoted: AUC 0.70 is worse than production's 0.72"
    )
    assert describe_step("another-step", {"parameters": {"Output": 5}, "artifacts": {}}) == "Output 5"


def test_step_lines_of_the_fanned_out_ingest() -> None:
    def spec(group: int, **done) -> str:
        found = {"dataset_uri": "s3://b/ds", "run_id": "r", "group": group, "groups": 2, "parts": 1 + group}
        return json.dumps({**found, "bytes": 3_000_000, **({"done": done} if done else {})})

    def step(name: str, output) -> str:
        return describe_step(name, {"parameters": {"Output": output}, "artifacts": {}})

    assert step("ingest-plan", [spec(0), spec(1)]) == (
        "3 parts (6.0 MB) in 2 groups, one task each per stage -> s3://b/ds"
    )
    assert step("scan", spec(1, parts=2, rows=1800, rejected=3)) == "group 2 of 2: 2 parts, 1,800 rows, 3 rejected"
    scans = [spec(0, parts=1, rows=1000, rejected=0), spec(1, parts=2, rows=1800, rejected=3)]
    assert step("offsets", scans) == "2,800 rows in 2 groups, 3 rejected (within the limit); row ids fixed"
    assert step("count", spec(0, rows=1000, train=800)) == (
        "group 1 of 2: 1,000 rows split, vocabularies counted on their 800 training rows"
    )
    counts = [spec(0, rows=1000, train=800), spec(1, rows=1800, train=1450)]
    assert step("vocabulary", counts) == (
        "the counts of 2 groups merged: vocabularies and statistics of 2,250 training rows"
    )
    assert step("encode", spec(1, rows=1800, shards=1)) == "group 2 of 2: 1,800 rows in 1 shard"
    dataset = {"uri": "s3://b/ds/day=2", "rows": {"train": 800}, "features": {"dense": 1, "sparse": 2}}
    dataset.update(partition="day=2", vocabulary_added=7)
    assert describe_step("ingest-commit", {"parameters": {}, "artifacts": {"dataset": dataset}}) == (
        "partition day=2: train 800 rows, 1 dense + 2 sparse features, vocabulary extended by 7 new values "
        "-> s3://b/ds/day=2"
    )
