"""Daily retraining: the pipeline on the newest partition, warm-started from the model in production."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from wukong.cli import main
from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.io import open_storage
from wukong.pipeline import steps
from wukong.pipeline.partitions import partitions, resolve
from wukong.registry import RegistryError, open_registry

from ..data.test_workers import split_rows
from ..partitions import write_day
from ..train.test_warm_start import untrained_output
from .test_pipeline import QUICK


def test_the_newest_partition_is_the_greatest_value(tmp_path: Path) -> None:
    for name in ("day=9", "day=10", "day=2", "notes", "_temporary"):
        (tmp_path / "raw" / name).mkdir(parents=True)
    (tmp_path / "raw" / "day=12").write_text("a file, not a partition")
    assert partitions(tmp_path / "raw") == ["day=2", "day=9", "day=10"]  # integers compare as numbers
    newest = resolve("newest", str(tmp_path / "raw"), "s3://bucket/datasets/ctr/")
    assert (newest.name, newest.input_path) == ("day=10", tmp_path / "raw" / "day=10")
    assert newest.dataset_uri == "s3://bucket/datasets/ctr/day=10"
    assert resolve("day=9", str(tmp_path / "raw"), "d").dataset_uri == "d/day=9"  # a backfill names its day
    for name in ("2026-11-22", "date=2026-11-22"):
        (tmp_path / "dates" / name).mkdir(parents=True)
    with pytest.raises(DataError, match="no such partition; the partitions there: \\['date=2026-11-22'\\]"):
        resolve("date=2026-11-23", str(tmp_path / "dates"), "d")
    with pytest.raises(DataError, match="give newest or a KEY=VALUE folder name"):
        resolve("2026-11-22", str(tmp_path / "dates"), "d")
    with pytest.raises(DataError, match="holds no partitions"):
        resolve("newest", str(tmp_path / "raw" / "notes"), "d")


def test_the_warm_start_step_takes_production_when_there_is_one(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    assert steps.warm_start("", registry, "ctr") == {"folder": "", "label": "cold start (init_from not set)"}
    assert steps.warm_start("production", registry, "ctr")["label"] == "cold start (no ctr in production yet)"
    write_day(tmp_path / "raw", 1, rows=400)
    dataset = tmp_path / "day=1"
    argv = ["data", "prepare", "--source", "criteo", "--input", str(tmp_path / "raw" / "day=1"), "--quiet"]
    assert main([*argv, "--output", str(dataset)]) == 0
    version = open_registry(registry).register("ctr", untrained_output(tmp_path / "model", str(dataset)), {})
    open_registry(registry).promote("ctr", version.version)
    base = steps.warm_start("production", registry, "ctr")
    assert base == {"folder": version.uri, "label": f"ctr version 1 ({version.uri})"}
    with pytest.raises(RegistryError, match="has no version 3"):
        steps.warm_start("3", registry, "ctr")  # a version named outright must exist


@pytest.mark.slow
def test_the_second_day_warm_starts_from_production_under_kfp_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second of two scheduled runs as the daily schedule makes them (partition=newest,
    init_from=production): day 1's model, trained by the pipeline's own step functions (the first run's
    cold start is the warm-start step's test above), is in production; day 2 extends its vocabulary,
    starts from its weights and optimizer state, and the gate compares the two models on day 2's
    held-out rows. Day 2 (two files) is fanned out over two ingest tasks: the dataset training reads is
    the one ingest step's, row for row."""
    raw, workdir = tmp_path / "raw", tmp_path / "work"
    write_day(raw, 1)
    day1 = steps.ingest("criteo", str(raw), str(workdir / "dataset"), partition="newest")["uri"]
    model = steps.run_folder(str(workdir / "runs"), "day-1")
    steps.train(day1, model, "wukong", "tiny", QUICK, nproc_per_node=1)
    metrics = steps.evaluate(model, day1)
    steps.register(model, metrics, str(workdir / "registry"), "wukong-ctr", 0.5, 0.002, export=False)
    registry = open_registry(str(workdir / "registry"))
    production = registry.production("wukong-ctr")
    assert production.version == 1 and production.card["dataset"]["partition"] == "day=1"

    day2 = write_day(raw, 2)  # the next day's partition lands, in two files
    rows = (day2 / "clicks.tsv").read_text().splitlines(keepends=True)
    (day2 / "clicks-a.tsv").write_text("".join(rows[:3500]))  # over half the bytes: a group of its own
    (day2 / "clicks-b.tsv").write_text("".join(rows[3500:]))
    (day2 / "clicks.tsv").unlink()
    shutil.copytree(raw / "day=1", raw / "day=0")  # an older one: the newest is the greatest, not the latest copied
    sets = [item for override in QUICK for item in ("--set", override)]
    argv = ["pipeline", "run", "--local", "--workdir", str(workdir), "--source", "criteo", "--input", str(raw)]
    argv += ["--partition", "newest", "--init-from", "production", "--nproc", "1", "--min-auc", "0.5", *sets]
    capsys.readouterr()  # day 1's steps' output
    assert main([*argv, "--ingest-tasks", "2"]) == 0
    shown = capsys.readouterr().out
    lines = {line.split()[0]: line for line in shown.splitlines() if line and not line.startswith(" ")}
    steps_shown = [line.split()[0] for line in shown.splitlines()[1:] if line and not line.startswith(" ")]
    fanned_out = ["ingest-plan", "scan", "scan", "offsets", "count", "count", "vocabulary", "encode", "encode"]
    assert steps_shown[:11] == ["warm-start", *fanned_out, "ingest-commit"] and "ingest" not in steps_shown
    assert lines["ingest-plan"].startswith("ingest-plan 2 parts (") and "in 2 groups" in lines["ingest-plan"]
    assert {line.split(":")[0] for line in shown.splitlines() if line.startswith("encode ")} == {
        "encode    group 1 of 2",
        "encode    group 2 of 2",
    }
    assert lines["warm-start"].startswith(f"warm-start from wukong-ctr version 1 ({production.uri})")
    committed = lines["ingest-commit"]
    added = int(re.search(r"vocabulary extended by ([\d,]+) new values", committed)[1].replace(",", ""))
    assert "partition day=2:" in committed and added > 0
    assert "warm-started" in lines["train"]
    # The one ingest step on the same partition and vocabulary base: the same rows, ids and splits.
    one_step = steps.ingest(
        "criteo", str(raw), str(tmp_path / "one-step"), partition="day=2", extend_vocabulary=production.uri
    )
    assert one_step["vocabulary_added"] == added and one_step["uri"] == str(tmp_path / "one-step" / "day=2")
    assert split_rows(str(workdir / "dataset" / "day=2")) == split_rows(one_step["uri"])

    dataset = read_manifest(open_storage(str(workdir / "dataset" / "day=2")))
    assert dataset.partition == "day=2" and dataset.preprocessing["vocabulary_extends"]["from"] == production.uri
    run = re.search(r"model\s+\S+ \(.*\) -> (\S+)", shown)[1]
    card = json.loads(Path(run, "model_card.json").read_text())
    assert card["dataset"]["partition"] == "day=2" and card["init_from"]["folder"] == production.uri
    assert card["dataset"]["uri"] == str(workdir / "dataset" / "day=2")  # the fanned-out ingest's, compared above
    assert card["init_from"]["optimizer_state"]["loaded"] > 0  # from the checkpoint of version 1's training run
    assert f"warm start  from {production.uri}" in shown

    versions = registry.versions("wukong-ctr")
    assert [v.version for v in versions] == [1, 2] and versions[1].lineage["dataset"].endswith("day=2")
    if registry.production("wukong-ctr").version == 2:
        assert re.search(r"promoted to production \(production's AUC 0\.\d{4} on the same split\)", lines["register"])
    else:
        assert "re-evaluated on this test split" in lines["register"]
