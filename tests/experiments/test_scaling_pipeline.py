"""The scaling pipeline: compiled YAML up to date, and a 2-point sweep under kfp.local."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import yaml

from pipelines.wukong_scaling_pipeline import COMPILED, PARALLELISM, compile_pipeline, run_locally

from .conftest import QUICK


def test_compiled_scaling_pipeline_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "fresh.yaml").read_text()
    assert fresh == COMPILED.read_text(), "pipelines/wukong_scaling_pipeline.yaml is stale: run `make pipeline`"
    spec, platform = list(yaml.safe_load_all(fresh))
    tasks = spec["root"]["dag"]["tasks"]
    assert {"ingest", "sweep-plan", "for-loop-1", "sweep-report"} <= set(tasks)
    loop = tasks["for-loop-1"]
    assert loop["taskInfo"]["name"] == "sweep-points"
    assert loop["iteratorPolicy"]["parallelismLimit"] == PARALLELISM
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("sweep-plan-Output")
    collected = tasks["sweep-report"]["inputs"]["parameters"]["records"]["taskOutputParameter"]
    assert collected["producerTask"] == "for-loop-1"  # the report waits for every point (dsl.Collected)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(e["secretAsEnv"][0]["secretName"] == "wukong-s3-credentials" for e in executors.values())


@pytest.mark.slow
def test_two_point_sweep_under_kfp_local(tmp_path: Path) -> None:
    printer = builtins.print
    laws = run_locally(
        tmp_path,
        source="teacher",
        rows=3000,
        models=["dlrm"],
        mflops="0.02,0.04",
        seeds=1,
        end_seeds=0,
        preset="tiny",
        overrides=QUICK,
    )
    assert builtins.print is printer, "kfp.local's indented print leaked out of the run"
    runs = sorted((tmp_path / "runs").glob("*/*/trial.json"))
    records = [json.loads(p.read_text()) for p in runs]
    assert sorted(r["id"] for r in records) == ["dlrm-00-s0", "dlrm-01-s0"]
    assert records[0]["mflops_per_example"] < records[1]["mflops_per_example"]
    assert all("excess_logloss" in r["test"] for r in records)
    # Two compute values cannot pin down three parameters: the report says so instead of inventing a law.
    assert {law["view"] for law in json.loads(laws)} == {"logloss", "excess", "compute"}
    assert all("at least 3 distinct" in law["reason"] for law in json.loads(laws))
    html = next((tmp_path / "kfp").glob("*/sweep-report/report")).read_text()
    assert html.count("data:image/png;base64,") == 3 and "dlrm-01-s0" not in html  # points, not ids
    markdown = next((tmp_path / "kfp").glob("*/sweep-report/summary")).read_text()
    assert "## Fitted laws" in markdown and markdown.count("| dlrm") >= 5
    jsonl = next((tmp_path / "kfp").glob("*/sweep-report/sweep")).read_text().splitlines()
    assert len(jsonl) == 2
