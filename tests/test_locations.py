"""Where commands find what earlier commands made: --registry, else $WUKONG_REGISTRY, else the newest
runs/*/registry here or in the nearest parent folder; a dataset to inspect the same way; the dataset
a model was trained on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from wukong.cli import main
from wukong.cli.locations import training_dataset
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.sources.synthetic import SyntheticSource
from wukong.registry import open_registry


def registry_with(folder: Path, model: str, age_s: float) -> Path:
    """A registry holding one version of ``ctr`` (card model ``model``), everything last changed ``age_s`` ago."""
    run = folder / "train-output"
    run.mkdir(parents=True)
    torch.save({"w": torch.zeros(2)}, run / "model.pt")
    (run / "model_card.json").write_text(json.dumps({"model": model}))
    registry = folder / "registry"
    open_registry(str(registry)).register("ctr", str(run), {"auc": 0.7})
    stamp = os.path.getmtime(registry) - age_s
    for path in [registry, *registry.rglob("*")]:
        os.utime(path, (stamp, stamp))
    return registry


@pytest.fixture
def two_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``runs/old`` and ``runs/new`` each with a registry, and the working directory a folder below them."""
    monkeypatch.delenv("WUKONG_REGISTRY", raising=False)
    registry_with(tmp_path / "runs" / "old", "dlrm", age_s=3600)
    registry_with(tmp_path / "runs" / "new", "dcnv2", age_s=60)
    (tmp_path / "notes").mkdir()
    monkeypatch.chdir(tmp_path / "notes")
    return tmp_path


def test_the_newest_registry_of_the_nearest_runs_folder(two_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "list"]) == 0
    captured = capsys.readouterr()
    assert "dcnv2" in captured.out and "dlrm" not in captured.out
    assert captured.err.count("\n") == 1
    newest = two_runs / "runs" / "new" / "registry"  # outside the working directory: shown in full
    assert captured.err.startswith(f"wukong registry list: registry {newest} (the newest runs/*/registry; ")
    # A newer change to the other registry makes it the one.
    registry = open_registry(str(two_runs / "runs" / "old" / "registry"))
    registry.promote("ctr", 1)
    assert main(["registry", "show", "ctr"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["card"]["model"] == "dlrm" and "runs/old/registry" in captured.err


def test_the_environment_and_the_flag_come_first(
    two_runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = str(two_runs / "runs" / "old" / "registry")
    monkeypatch.setenv("WUKONG_REGISTRY", old)
    assert main(["registry", "list"]) == 0
    captured = capsys.readouterr()
    assert "dlrm" in captured.out and captured.err == f"wukong registry list: registry {old} (from $WUKONG_REGISTRY)\n"
    new = str(two_runs / "runs" / "new" / "registry")
    assert main(["registry", "list", "--registry", new]) == 0
    captured = capsys.readouterr()
    assert "dcnv2" in captured.out and captured.err == ""  # what was asked for is not announced


def test_no_registry_anywhere_is_a_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WUKONG_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["registry", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no registry given: pass --registry URI or set WUKONG_REGISTRY" in err


def test_inspect_finds_the_newest_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["data", "inspect"]) == 2
    assert "no dataset given: pass its URI" in capsys.readouterr().err
    prepare(SyntheticSource(rows=2_000, seed=0), str(tmp_path / "runs" / "demo" / "dataset"), PrepareOptions())
    assert main(["data", "inspect", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["source"]["name"] == "synthetic"
    assert captured.err.startswith(f"wukong data inspect: dataset {Path('runs') / 'demo' / 'dataset'} ")


def test_inspect_after_a_partitioned_run_takes_the_newest_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A partitioned pipeline run publishes runs/<name>/dataset/KEY=VALUE, nothing at runs/<name>/dataset."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "daily" / "dataset"
    for day, rows in (("day=9", 900), ("day=10", 1000)):  # the newest is the greatest value, not the last made
        prepare(SyntheticSource(rows=rows, seed=0), str(folder / day), PrepareOptions(partition=day))
    (folder / "day=11").mkdir()  # a partition whose run failed: no manifest, not a dataset
    assert main(["data", "inspect", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["partition"] == "day=10"
    shown = Path("runs") / "daily" / "dataset"
    assert captured.err == (
        f"wukong data inspect: dataset {shown / 'day=10'} (the newest partition of the newest runs/*/dataset, "
        "of day=9, day=10; pass a URI for another)\n"
    )
    assert main(["data", "inspect", str(shown)]) == 2
    assert capsys.readouterr().err == (
        f"wukong data inspect: {shown} holds the datasets of partitions day=9, day=10, not one dataset; "
        f"pass one of them, e.g. {shown}/day=10\n"
    )
    assert main(["data", "inspect", str(shown / "day=9")]) == 0
    assert "day=9" in capsys.readouterr().out


def test_the_dataset_a_model_was_trained_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wukong.data.errors import DataError

    (tmp_path / "model_card.json").write_text(json.dumps({"dataset": {"uri": "s3://b/ds"}}))
    assert training_dataset(str(tmp_path), "evaluate") == "s3://b/ds"
    assert "wukong evaluate: data s3://b/ds (the dataset the model was trained on)" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"no model_card\.json"):
        training_dataset(str(tmp_path / "elsewhere"), "evaluate")
