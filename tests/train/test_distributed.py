"""Multi-process training on CPU with gloo: hybrid sharding, resharded resume, crash recovery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from wukong.data.batch import random_batch
from wukong.schema import FeatureSchema
from wukong.train.outputs import load_trained_model

from .conftest import wukong_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_and_one(ml_dataset: str, tmp_path_factory: pytest.TempPathFactory):
    """One epoch with 2 processes and with 1, same global batch size and data."""
    root = tmp_path_factory.mktemp("runs")
    two = wukong_train(ml_dataset, root / "two", "--nproc", "2", "--epochs", "1", "--validate-every", "100")
    one = wukong_train(ml_dataset, root / "one", "--epochs", "1", "--validate-every", "100")
    assert two.returncode == 0, two.output[-3000:]
    assert one.returncode == 0, one.output[-3000:]
    return two, one


def test_two_processes_use_a_hybrid_plan(two_and_one) -> None:
    two, _ = two_and_one
    card = two.card()
    assert card["world_size"] == 2
    kinds = {row[3] for row in card["sharding_plan"]}
    assert {"row_wise", "table_wise", "data_parallel"} <= kinds
    table_wise_ranks = {row[5] for row in card["sharding_plan"] if row[3] == "table_wise"}
    assert table_wise_ranks == {"[0]", "[1]"}, "table-wise tables should be spread over both ranks"


def test_two_process_training_learns_and_matches_one_process(two_and_one) -> None:
    two, one = two_and_one
    first, last = two.validations()[0]["valid"], two.validations()[-1]["valid"]
    assert last["logloss"] < 0.69 and last["ne"] < 0.9, "validation loss should fall well below the base rate's"
    assert last["logloss"] <= first["logloss"] + 0.005
    auc_two, auc_one = two.card()["metrics"]["valid"]["auc"], one.card()["metrics"]["valid"]["auc"]
    assert abs(auc_two - auc_one) < 0.01, (auc_two, auc_one)
    assert two.card()["steps"] == one.card()["steps"]


def test_outputs_are_complete(two_and_one, ml_dataset: str) -> None:
    two, _ = two_and_one
    state = torch.load(two.folder / "model.pt", weights_only=True)
    assert any(k.startswith("embedding.ebc.embedding_bags.") for k in state)
    model, card = load_trained_model(str(two.folder))
    batch = random_batch(FeatureSchema.from_dict(card["schema"]), 8)
    assert torch.isfinite(model(batch.dense, batch.sparse)).all()
    assert card["dataset"]["uri"] == ml_dataset and len(card["dataset"]["manifest_sha256"]) == 64
    assert card["package_versions"]["torch"].startswith("2.") and card["examples_per_s"] > 0
    assert set(card["metrics"]["valid"]) >= {"auc", "logloss", "ne", "calibration", "rows"}
    steps = [r["step"] for r in two.history() if "loss" in r]
    assert steps == sorted(steps) and steps[0] == 1


def test_checkpoint_from_two_processes_resumes_with_one_and_two(two_and_one, ml_dataset: str, tmp_path: Path) -> None:
    """The 2-process run's final checkpoint resumed with 1 and 2 processes, then trained on with 1.

    The copies forget that their last step was validated, so each resumed run validates the weights it
    loaded (into its own world size and plan) before it ends: a fresh evaluation to compare."""
    original = two_and_one[0]
    reference = original.validations()[-1]
    steps = original.card()["steps"]
    assert reference["step"] == steps
    for nproc in ("1", "2"):
        folder = tmp_path / f"resume-{nproc}"
        shutil.copytree(original.folder, folder)
        (marker,) = folder.glob(f"checkpoints/step-{steps:09d}/wukong.json")
        info = json.loads(marker.read_text())
        assert info["progress"]["last_validated"] == steps
        info["progress"]["last_validated"] = -1
        marker.write_text(json.dumps(info))
        resumed = wukong_train(ml_dataset, folder, "--nproc", nproc, "--epochs", "1", "--validate-every", "100")
        assert resumed.returncode == 0, resumed.output[-3000:]
        assert f"resumed from checkpoint step {steps}" in resumed.output
        assert len(resumed.validations()) == len(original.validations()) + 1, "the resumed run validates again"
        again = resumed.validations()[-1]
        assert again["step"] == steps
        # The same predictions on every validation row, whatever the world size and plan they load into.
        for metric in ("auc", "logloss", "calibration"):
            assert again["valid"][metric] == pytest.approx(reference["valid"][metric], abs=1e-5), (nproc, metric)
    longer = wukong_train(ml_dataset, tmp_path / "resume-1", "--epochs", "2", "--max-steps", str(steps + 30))
    assert longer.returncode == 0 and longer.card()["steps"] == steps + 30


def test_a_killed_rank_is_restarted_from_the_last_checkpoint(ml_dataset: str, tmp_path: Path) -> None:
    run = wukong_train(
        ml_dataset,
        tmp_path / "ft",
        "--nproc",
        "2",
        "--max-restarts",
        "1",
        "--max-steps",
        "60",
        "--checkpoint-every",
        "20",
        "--log-every",
        "1",
        env={"WUKONG_FAULT_KILL_STEP": "35", "WUKONG_FAULT_KILL_RANK": "1"},
    )
    assert run.returncode == 0, run.output[-3000:]
    assert "resumed from checkpoint step 20" in run.output
    assert run.card()["steps"] == 60
    logged = [r for r in run.history() if "loss" in r]
    assert [r["step"] for r in logged] == list(range(1, 61)), "every step exactly once after the resume"
    positions = [(r["epoch"], r["batch"]) for r in logged]
    assert positions == [(0, i) for i in range(1, 61)], "the data position continues where the checkpoint was"


def test_data_and_checkpoints_on_s3(bucket: str) -> None:
    """Dataset, checkpoints and outputs on an S3 API (moto); 2 ranks stage and upload, then resume."""
    from wukong.data.prepare import PrepareOptions, prepare
    from wukong.data.sources.synthetic import SyntheticSource
    from wukong.io import open_storage

    data = f"s3://{bucket}/data"
    prepare(SyntheticSource(rows=20_000, seed=3, cardinality=500), data, PrepareOptions())
    output = f"s3://{bucket}/run"
    first = wukong_train(data, output, "--nproc", "2", "--max-steps", "40", "--checkpoint-every", "20")
    assert first.returncode == 0, first.output[-3000:]
    keys = {o.key for o in open_storage(output).list()}
    assert {"model.pt", "model_card.json", "metrics.json", "history.jsonl"} <= keys
    assert "checkpoints/step-000000040/wukong.json" in keys and "checkpoints/step-000000040/.metadata" in keys
    assert {"checkpoints/step-000000040/__0_0.distcp", "checkpoints/step-000000040/__1_0.distcp"} <= keys
    resumed = wukong_train(data, output, "--max-steps", "60")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert "resumed from checkpoint step 40" in resumed.output
    card = json.loads(open_storage(output).read_bytes("model_card.json"))
    assert card["steps"] == 60 and card["world_size"] == 1


def test_torchrec_planner_on_cpu_with_two_processes(ml_dataset: str, tmp_path: Path) -> None:
    run = wukong_train(ml_dataset, tmp_path / "planner", "--nproc", "2", "--sharding", "planner", "--max-steps", "30")
    assert run.returncode == 0, run.output[-3000:]
    plan = run.card()["sharding_plan"]
    assert {row[0] for row in plan} >= {"t_user_id", "t_movie_id", "t_genres"}
    assert all(row[3] in ("row_wise", "table_wise", "column_wise", "data_parallel", "table_row_wise") for row in plan)
