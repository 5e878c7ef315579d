"""``wukong train --init-from``: a run on the next partition that starts from the model trained on the last.

Two days of click logs (tests/partitions.py): day 2 knows every user and item of day 1 and brings new
ones. The production model is trained on day 1; runs on day 2 start from it (warm) or from scratch
(cold). Weights are compared by raw value: a known value's row must be the production row of that
value, whatever ids the day-2 vocabulary gave it and however the tables are sharded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from wukong.cli import main
from wukong.config import config_to_dict, load_config
from wukong.data.manifest import read_manifest
from wukong.data.vocabulary import dataset_vocabulary, read_vocabulary, write_copy
from wukong.evaluate import evaluate_model
from wukong.io import open_storage
from wukong.model import build_model
from wukong.registry import open_registry
from wukong.serve.artifact import export_artifact
from wukong.train.outputs import CARD, MODEL

from ..partitions import write_day
from .conftest import wukong_train
from .test_review_fixes import run_probe

TABLES = "embedding.ebc.embedding_bags"


def prepare(days: Path, day: int, output: Path, *extra: str) -> str:
    argv = ["data", "prepare", "--source", "criteo", "--input", str(days / f"day={day}"), "--output", str(output)]
    assert main([*argv, "--partition", f"day={day}", "--quiet", *extra]) == 0
    return str(output)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Day 1 and day 2 prepared; day 2 twice: with day 1's vocabulary extended, and with its own."""
    root = tmp_path_factory.mktemp("days")
    for day in (1, 2):
        write_day(root / "raw", day)
    one = prepare(root / "raw", 1, root / "day=1")
    return {
        "one": one,
        "two": prepare(root / "raw", 2, root / "day=2", "--extend-vocabulary", one),
        "two_own_ids": prepare(root / "raw", 2, root / "day=2-own"),
    }


@pytest.fixture(scope="module")
def production(days: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model of day 1, trained to convergence-ish (one process)."""
    folder = tmp_path_factory.mktemp("production") / "run"
    run = wukong_train(days["one"], folder, "--epochs", "6", "--learning-rate", "0.003")
    assert run.returncode == 0, run.output[-3000:]
    return folder


def first_loss(run) -> float:
    return next(r["loss"] for r in run.history() if r["step"] == 1)


@pytest.mark.slow
def test_a_warm_start_begins_at_the_loss_production_ended_with(
    days: dict[str, str], production: Path, tmp_path: Path
) -> None:
    ended = json.loads((production / "metrics.json").read_text())["logloss"]  # day 1's validation
    on_day_two = evaluate_model(str(production), days["two"], "train")  # the same weights on day 2's rows
    assert on_day_two["ids_mapped_by_value"]  # day 2's tables are bigger: new values read as unseen

    settings = ["--max-steps", "3", "--batch-size", "1024"]
    warm = wukong_train(days["two"], tmp_path / "warm", *settings, "--init-from", str(production))
    cold = wukong_train(days["two"], tmp_path / "cold", *settings)
    assert warm.returncode == 0 and cold.returncode == 0, (warm.output + cold.output)[-3000:]
    warm_loss, cold_loss = first_loss(warm), first_loss(cold)
    assert abs(warm_loss - on_day_two["logloss"]) < 0.05, (warm_loss, on_day_two["logloss"])
    assert abs(warm_loss - ended) < 0.05, (warm_loss, ended)
    assert cold_loss - warm_loss > 0.08, (cold_loss, warm_loss)  # cold starts near log(2)

    record = warm.card()["init_from"]
    assert record["from"] == str(production) and cold.card()["init_from"] is None
    users = record["tables"]["t_cat_0"]
    assert users["new"] > 0 and users["copied"] + users["new"] == users["rows"] == read_vocabulary(days["two"]).size(
        "cat_0"
    )
    assert record["optimizer_state"]["loaded"] > 0  # the training output kept its checkpoint
    assert "warm start from" in warm.output and warm.card()["steps"] == 3  # a fresh step counter
    # The run keeps its own vocabulary: it extends day 1's, so the ids of day-1 values are the same.
    own = read_vocabulary(str(tmp_path / "warm"))
    assert own.values["cat_0"][: read_vocabulary(str(production)).size("cat_0") - 1].equals(
        read_vocabulary(str(production)).values["cat_0"]
    )


@pytest.mark.slow
def test_known_values_keep_their_rows_on_two_ranks(days: dict[str, str], production: Path, tmp_path: Path) -> None:
    """Day 2 prepared with its own ids (not extended): rows still follow their values. One process trained
    production; two load it, the user and item tables row-wise sharded across them."""
    arguments = {
        "data": days["two_own_ids"],
        "output": str(tmp_path / "warm"),
        "init_from": str(production),
        "result": str(tmp_path / "result.json"),
        "train": {"row_wise_min_rows": 100, "batch_size": 256},
    }
    seen = run_probe("warm", arguments, nproc=2)
    plan = {row[0]: row for row in seen["plan"]}
    assert plan["t_cat_0"][3] == "row_wise" and plan["t_cat_0"][5] == [0, 1]
    assert plan["t_cat_2"][3] == "data_parallel"
    saved = torch.load(production / MODEL, weights_only=True)
    old, new = read_vocabulary(str(production)), dataset_vocabulary(days["two_own_ids"])
    for feature in ("cat_0", "cat_1", "cat_2"):
        before = saved[f"{TABLES}.t_{feature}.weight"]
        after = torch.tensor(seen["tables"][f"model.{TABLES}.t_{feature}.weight"])
        known = {value: i + 1 for i, value in enumerate(old.values[feature].to_pylist())}
        assert torch.equal(after[0], before[0])  # the unseen id's row
        moved = 0
        for i, value in enumerate(new.values[feature].to_pylist(), start=1):
            if value in known:
                assert torch.equal(after[i], before[known[value]]), (feature, value)
                moved += known[value] != i
            else:
                assert not (after[i] == before).all(dim=1).any()  # a fresh row, no copy of an old one
        assert feature == "cat_2" or moved > 0  # the ids did change: rows were mapped, not copied in place
    assert seen["report"]["tables"]["t_cat_0"]["new"] > 0


# ---- bad input: no model trained, one line each --------------------------------------------------


def untrained_output(folder: Path, dataset: str, model: str = "wukong") -> str:
    """A model folder as `wukong train` leaves one (weights, card, its vocabulary), without training."""
    cfg = load_config("tiny", [f"model.name={model}"])
    schema = read_manifest(open_storage(dataset)).schema
    folder.mkdir(parents=True)
    torch.save(build_model(model, schema, cfg.model).state_dict(), folder / MODEL)
    card = {"model": model, "config": config_to_dict(cfg), "schema": schema.to_dict(), "dataset": {"uri": dataset}}
    (folder / CARD).write_text(json.dumps(card))
    write_copy(open_storage(dataset), open_storage(str(folder)))
    return str(folder)


@pytest.fixture(scope="module")
def small_days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("small")
    write_day(root / "raw", 1, rows=600)
    teacher = root / "teacher"
    argv = ["data", "prepare", "--source", "teacher", "--rows", "300", "--teacher-fields", "3", "--quiet"]
    assert main([*argv, "--output", str(teacher)]) == 0
    return {"one": prepare(root / "raw", 1, root / "day=1"), "teacher": str(teacher)}


def test_an_incompatible_init_from_is_one_line_and_writes_nothing(
    small_days: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = untrained_output(tmp_path / "model", small_days["one"])
    registry = str(tmp_path / "registry")
    open_registry(registry).register("ctr", model, {"auc": 0.7})
    cases = [
        (["--init-from", "9", "--registry", registry], "model 'ctr' has no version 9"),
        (["--init-from", "ctr:production", "--registry", registry], "has no 'production' version"),
        (["--init-from", str(tmp_path / "none")], "no model.pt and model_card.json"),
        (["--init-from", model, "--model", "dlrm"], "a wukong model, this run trains dlrm"),
        (["--init-from", model, "--set", "model.embedding_dim=32"], "embedding_dim 16, this run 32"),
        (["--init-from", model, "--set", "model.head_mlp=[32]"], "the model configuration differs"),
        (["--init-from", model, "--data", small_days["teacher"]], "a warm start needs the same features"),
    ]
    for extra, expected in cases:
        argv = ["train", "--data", small_days["one"], "--output", str(tmp_path / "out"), "--config", "tiny"]
        code = main([*argv, "--nproc", "1", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (extra, err)
        assert not (tmp_path / "out").exists()


def test_a_registered_version_keeps_the_models_vocabulary(small_days: dict[str, str], tmp_path: Path) -> None:
    """Registry versions carry the model's vocabulary, so a dataset prepared again since (here: deleted)
    stops neither a vocabulary extension nor an export."""
    dataset = tmp_path / "day=1"
    shutil.copytree(small_days["one"], dataset)
    fitted = dataset_vocabulary(str(dataset))
    version = open_registry(str(tmp_path / "registry")).register(
        "ctr", untrained_output(tmp_path / "model", str(dataset)), {"auc": 0.7}
    )
    assert version.name == "ctr"
    shutil.rmtree(dataset)
    kept = read_vocabulary(version.uri)
    assert kept.where == version.uri and kept.values["cat_0"].equals(fitted.values["cat_0"])
    signature = export_artifact(version.uri)
    assert "vocabulary" in signature["files"] and signature["preprocessing"]["categorical"]["mode"] == "frequency"
