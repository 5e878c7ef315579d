"""Exact resumes, counted row by row: every training row of an epoch is trained on once, whether the
epoch is interrupted and resumed under another world size or a rank is SIGKILLed and restarted; and
2-process training is 1-process training, step for step, on the same global batches.

Which rows each step trained on comes from the ``WUKONG_RECORD_ROWS`` hook
(:mod:`wukong.train.rowlog`); the reader-level tests (tests/data) cover many more layouts quickly.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.sources.synthetic import SyntheticSource
from wukong.train.checkpoint import step_dir

from .conftest import wukong_train
from .test_review_fixes import run_probe

pytestmark = pytest.mark.slow

BATCH = 96  # divisible by 1, 2 and 3 ranks
CHECKPOINT = 17  # the interruption: an odd step, mid-epoch


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("rows") / "ds")
    prepare(SyntheticSource(rows=6_000, seed=1, cardinality=200), out, PrepareOptions(shard_rows=1_500, block_rows=250))
    return out


def steps_per_epoch(dataset: str) -> int:
    return DatasetReader(dataset, "train", BATCH).batches_per_epoch


def recorded(folder: Path) -> dict[int, list[int]]:
    """Rows trained on at each step, all ranks together; a step retrained after a restart counts
    in the attempt that trained it last (the earlier attempt's work was rolled back)."""
    lines = [json.loads(line) for path in folder.glob("rank*.jsonl") for line in path.read_text().splitlines()]
    last = defaultdict(int)
    for line in lines:
        last[line["step"]] = max(last[line["step"]], line["attempt"])
    rows: dict[int, list[int]] = defaultdict(list)
    for line in lines:
        if line["attempt"] == last[line["step"]]:
            rows[line["step"]] += line["rows"]
    return {step: sorted(ids) for step, ids in sorted(rows.items())}


def assert_every_row_once(steps: dict[int, list[int]], dataset: str) -> None:
    total = steps_per_epoch(dataset)
    assert list(steps) == list(range(1, total + 1)), "every step of the epoch exactly once"
    assert all(len(ids) == BATCH for ids in steps.values())
    ids = [i for batch in steps.values() for i in batch]
    assert len(ids) == len(set(ids)), "a row was trained on twice in one epoch"
    train_rows = DatasetReader(dataset, "train", 1, shuffle=False, drop_last=False).total_rows
    assert len(ids) == total * BATCH and train_rows - len(ids) < BATCH, "rows were skipped"


@pytest.fixture(scope="module")
def reference(dataset: str, tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted epoch on 2 processes, every checkpoint kept, every step's rows and loss."""
    root = tmp_path_factory.mktemp("reference")
    args = ["--nproc", "2", "--batch-size", str(BATCH), "--epochs", "1", "--log-every", "1"]
    args += ["--checkpoint-every", str(CHECKPOINT), "--keep-checkpoints", "10"]
    run = wukong_train(dataset, root / "run", *args, env={"WUKONG_RECORD_ROWS": str(root / "rows")})
    assert run.returncode == 0, run.output[-3000:]
    return run, recorded(root / "rows")


def losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in run.history() if "loss" in r}


def test_the_uninterrupted_epoch_reads_every_row_once(reference, dataset: str) -> None:
    assert_every_row_once(reference[1], dataset)


@pytest.mark.parametrize("nproc", [3, 1])
def test_an_epoch_resumed_under_another_world_size_reads_every_row_once(
    reference, dataset: str, tmp_path: Path, nproc: int
) -> None:
    run, reference_rows = reference
    folder = tmp_path / "run"
    shutil.copytree(run.folder, folder)
    for later in (folder / "checkpoints").iterdir():
        if later.name != Path(step_dir(CHECKPOINT)).name:
            shutil.rmtree(later)
    resumed = wukong_train(
        dataset, folder, "--nproc", str(nproc), "--batch-size", str(BATCH), "--epochs", "1",
        env={"WUKONG_RECORD_ROWS": str(tmp_path / "rows")},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert f"resumed from checkpoint step {CHECKPOINT}" in resumed.output
    after = recorded(tmp_path / "rows")
    assert min(after) == CHECKPOINT + 1
    assert_every_row_once({s: r for s, r in reference_rows.items() if s <= CHECKPOINT} | after, dataset)
    assert resumed.card()["steps"] == steps_per_epoch(dataset) and resumed.card()["world_size"] == nproc


def test_a_killed_rank_restarts_on_exactly_the_batches_of_an_uninterrupted_run(
    reference, dataset: str, tmp_path: Path
) -> None:
    """SIGKILL rank 1 at step 23 under --max-restarts: the job resumes from step 17 and retrains
    steps 18-23 and the rest on the very rows, in the very order, with the very losses of a run
    that never stopped (the same world size: the epoch continues its shuffle)."""
    run, reference_rows = reference
    killed = wukong_train(
        dataset, tmp_path / "run", "--nproc", "2", "--max-restarts", "1", "--batch-size", str(BATCH),
        "--epochs", "1", "--log-every", "1", "--checkpoint-every", str(CHECKPOINT),
        env={"WUKONG_FAULT_KILL_STEP": "23", "WUKONG_RECORD_ROWS": str(tmp_path / "rows")},
    )  # fmt: skip
    assert killed.returncode == 0, killed.output[-3000:]
    assert f"resumed from checkpoint step {CHECKPOINT}" in killed.output
    rows = recorded(tmp_path / "rows")
    assert rows == reference_rows
    assert_every_row_once(rows, dataset)
    assert losses(killed) == pytest.approx(losses(run), abs=1e-6)


def test_two_processes_train_like_one_on_the_same_global_batches(ml_dataset: str, tmp_path: Path) -> None:
    """The same initial weights (a checkpoint of step 0, resharded), the same global batches split
    over the ranks: the same loss at every step and the same dense weights; replicated tables are
    trained and stay identical on every rank."""
    arguments = {"data": ml_dataset, "steps": 8, "train": {"batch_size": 256}}
    one = run_probe(
        "steps", arguments | {"output": str(tmp_path / "one"), "resume": "never", "result": str(tmp_path / "1.json")}
    )
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    two = run_probe(
        "steps", arguments | {"output": str(tmp_path / "two"), "resume": "auto", "result": str(tmp_path / "2.json")}, 2
    )
    kinds = {row[3] for row in two["plan"]}
    assert {"row_wise", "table_wise", "data_parallel"} <= kinds, kinds
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-5)
    for key, value in one["dense"].items():
        torch.testing.assert_close(torch.tensor(two["dense"][key]), torch.tensor(value), atol=1e-5, rtol=0, msg=key)
    assert two["replicated"], "the plan should replicate some tables"
    for name, table in two["replicated"].items():
        assert table["changed"], f"{name} did not train"
        assert table["copies"][0] == table["copies"][1], f"{name} differs between ranks"
