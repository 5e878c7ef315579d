"""Training and evaluating on teacher data report the oracle's metrics and the model's excess LogLoss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wukong.cli import main
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.sources.teacher import TeacherConfig, TeacherSource

from .conftest import wukong_train

pytestmark = pytest.mark.slow


def test_a_trained_model_is_measured_against_the_oracle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "teacher")
    config = TeacherConfig(num_sparse=6, num_dense=2, max_cardinality=60, width=24, hidden=16, order=3)
    manifest = prepare(TeacherSource(40_000, seed=1, config=config), data, PrepareOptions())
    run = wukong_train(data, tmp_path / "m", "--model", "dlrm", "--learning-rate", "0.003")
    assert run.returncode == 0, run.output
    validations = run.validations()
    assert validations and all("excess_logloss" in v["valid"] for v in validations)
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert metrics["oracle_logloss"] == pytest.approx(metrics["logloss"] - metrics["excess_logloss"])
    assert metrics["excess_logloss"] > 0  # a few hundred steps of a small model: far from the Bayes limit
    assert metrics["oracle_auc"] > metrics["auc"] > 0.55  # it learned something, and the oracle knows more
    assert main(["evaluate", "--model", str(run.folder), "--data", data, "--output", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out
    assert "excess_logloss" in printed and "oracle_auc" in printed
    test = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert test["oracle_logloss"] == pytest.approx(manifest.statistics["oracle"]["test"]["logloss"], rel=1e-6)
