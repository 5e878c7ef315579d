"""Single-process training behaviour: schedules, plans, divergence, bad input, evaluation."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from wukong.cli import main
from wukong.config import TrainConfig
from wukong.data.manifest import read_manifest
from wukong.evaluate import compute_metrics, curves
from wukong.io import open_storage
from wukong.model import build_model
from wukong.schema import FeatureSchema, SparseFeature
from wukong.train.optim import lr_factor
from wukong.train.sharding import _hybrid

from .conftest import wukong_train


def test_warmup_then_schedules() -> None:
    assert [lr_factor(s, 4, 100, "constant") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(52, 4, 100, "linear") == pytest.approx(0.5)
    assert lr_factor(100, 4, 100, "linear") == 0.0
    assert lr_factor(52, 4, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(4, 4, 100, "cosine") == pytest.approx(1.0)


def test_hybrid_plan_by_table_size(tiny) -> None:
    from torchrec.distributed.sharding_plan import construct_module_sharding_plan

    schema = FeatureSchema(
        sparse=(
            SparseFeature("big", 50_000),
            SparseFeature("mid1", 2_000),
            SparseFeature("mid2", 1_500),
            SparseFeature("small", 40),
        )
    )
    ebc = build_model("dlrm", schema, tiny.model, device="meta").embedding.ebc
    chosen = _hybrid(ebc, TrainConfig(row_wise_min_rows=10_000, data_parallel_max_rows=100), world_size=2)
    plan = construct_module_sharding_plan(ebc, chosen, local_size=2, world_size=2, device_type="cpu")
    assert {name: spec.sharding_type for name, spec in plan.items()} == {
        "t_big": "row_wise",
        "t_mid1": "table_wise",
        "t_mid2": "table_wise",
        "t_small": "data_parallel",
    }
    assert {tuple(plan["t_mid1"].ranks), tuple(plan["t_mid2"].ranks)} == {(0,), (1,)}  # balanced over ranks


def reference_auc(p: list[float], y: list[int]) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    positives = [a for a, b in zip(p, y) if b == 1]
    negatives = [a for a, b in zip(p, y) if b == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in positives for b in negatives)
    return wins / (len(positives) * len(negatives))


def test_metrics_match_a_direct_computation() -> None:
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(400, generator=g) < 0.3).float()
    p = torch.sigmoid(torch.randn(400, generator=g) + 1.5 * labels)
    p[:10] = 0.5  # ties
    metrics = compute_metrics(p, labels)
    ps, ys = p.tolist(), [int(v) for v in labels.tolist()]
    assert metrics["auc"] == pytest.approx(reference_auc(ps, ys), abs=1e-6)
    logloss = -sum(y * math.log(q) + (1 - y) * math.log(1 - q) for q, y in zip(ps, ys)) / len(ps)
    assert metrics["logloss"] == pytest.approx(logloss, rel=1e-6)
    base = sum(ys) / len(ys)
    assert metrics["ne"] == pytest.approx(
        logloss / -(base * math.log(base) + (1 - base) * math.log(1 - base)), rel=1e-6
    )
    assert metrics["calibration"] == pytest.approx((sum(ps) / len(ps)) / base, rel=1e-6)
    assert metrics["rows"] == 400
    drawn = curves(p, labels)
    assert drawn["roc"]["fpr"][0] == 0.0 and drawn["roc"]["tpr"][-1] == 1.0
    assert sum(b["rows"] for b in drawn["calibration"]) == 400


@pytest.mark.slow
def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(ml_dataset: str, tmp_path: Path) -> None:
    run = wukong_train(
        ml_dataset,
        tmp_path / "nan",
        "--max-steps",
        "50",
        "--learning-rate",
        "1e20",
        "--embedding-learning-rate",
        "1e20",
        "--checkpoint-every",
        "1",
        "--log-every",
        "1",
    )
    assert run.returncode == 1
    assert "loss is nan at step 2; stopped, the last good checkpoint is step 1" in run.output
    checkpoints = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert checkpoints == ["step-000000001"]
    assert (tmp_path / "nan" / "checkpoints" / "step-000000001" / "wukong.json").exists()


def test_bad_training_inputs_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["train", "--data", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--nproc", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no manifest.json, so this is not a dataset" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "x", "--output", "y", "--model", "transformer"])
    assert exit_info.value.code == 2


@dataclass
class Evaluated:
    model: Path  # a `wukong train` output
    metrics: dict  # `wukong evaluate` of it on the test split, in this process


@pytest.fixture(scope="module")
def evaluated(ml_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    """One trained model and its single-process evaluation, shared by the evaluation tests."""
    root = tmp_path_factory.mktemp("evaluated")
    run = wukong_train(ml_dataset, root / "m", "--max-steps", "60")
    assert run.returncode == 0, run.output[-2000:]
    assert main(["evaluate", "--model", str(root / "m"), "--data", ml_dataset, "--output", str(root / "e")]) == 0
    return Evaluated(root / "m", json.loads((root / "e" / "metrics.json").read_text()))


@pytest.mark.slow
def test_evaluate_writes_metrics_and_rejects_a_mismatched_dataset(
    evaluated: Evaluated, ml_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = evaluated.metrics
    test_rows = read_manifest(open_storage(ml_dataset)).rows("test")
    assert metrics["split"] == "test" and metrics["rows"] == test_rows and 0.5 < metrics["auc"] < 1
    assert {"roc", "calibration"} <= set(metrics["curves"])
    from wukong.data.prepare import PrepareOptions, prepare
    from wukong.data.sources.synthetic import SyntheticSource

    other = str(tmp_path / "synthetic")
    prepare(SyntheticSource(rows=2_000), other, PrepareOptions())
    capsys.readouterr()
    code = main(["evaluate", "--model", str(evaluated.model), "--data", other, "--output", str(tmp_path / "e2")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "differ from the model's" in err


@pytest.mark.slow
def test_distributed_evaluation_equals_single_process(evaluated: Evaluated, ml_dataset: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "wukong",
        "evaluate",
        "--model",
        str(evaluated.model),
        "--data",
        ml_dataset,
        "--output",
        str(tmp_path / "two"),
        "--batch-size",
        "1000",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    one = evaluated.metrics
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["rows"] == one["rows"]
    for metric in ("auc", "logloss", "calibration"):
        assert two[metric] == pytest.approx(one[metric], abs=1e-6), metric
