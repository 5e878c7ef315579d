"""``wukong export`` and ``wukong predict``: a trained model served from raw rows, outside training code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from wukong.cli import main
from wukong.data.reader import DatasetReader
from wukong.data.sources import open_source
from wukong.pipeline import steps
from wukong.serve.predict import ServedModel
from wukong.train.outputs import load_trained_model
from wukong.train.predict import predict

from .conftest import wukong_train


@dataclass
class Exported:
    run: Path  # the training output; its export/ holds the artifact
    raw: pa.Table  # the source's raw rows, row id = position (as prepare numbered them)
    test_ids: np.ndarray  # row ids of the test split
    trained: np.ndarray  # the TorchRec model's test probabilities, in test_ids order


@pytest.fixture(scope="module")
def exported(ml_dataset: str, generated_movielens: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    run = tmp_path_factory.mktemp("export") / "run"
    trained = wukong_train(ml_dataset, run, "--max-steps", "30")
    assert trained.returncode == 0, trained.output[-2000:]
    assert main(["export", "--model", str(run)]) == 0
    model, _ = load_trained_model(str(run))
    model.eval()
    reader = DatasetReader(ml_dataset, "test", 4096, shuffle=False, drop_last=False)
    probabilities, _, row_ids = predict(lambda b: model(b.dense, b.sparse), reader, torch.device("cpu"))
    raw = pa.concat_tables(chunk.table for chunk in open_source("movielens", generated_movielens).chunks())
    return Exported(run, raw, row_ids.numpy(), probabilities.numpy())


@pytest.mark.slow
def test_exported_scores_equal_the_trained_models_on_the_test_split(exported: Exported) -> None:
    served = ServedModel(str(exported.run / "export"))
    scores = served.score(exported.raw.take(exported.test_ids))
    assert len(scores) == len(exported.trained) > 1000
    np.testing.assert_allclose(scores, exported.trained, rtol=0, atol=1e-5)
    signature = served.signature
    assert signature["output"]["name"] == "probability"
    assert {"user_id", "genres"} <= {f["name"] for f in signature["inputs"]["sparse"]}
    assert signature["dataset"]["run_id"] and signature["versions"]["exported_with"]["torch"] == torch.__version__


@pytest.mark.slow
def test_unseen_ids_and_missing_values_score_as_in_training(exported: Exported) -> None:
    served = ServedModel(str(exported.run / "export"))
    rows = exported.raw.take(exported.test_ids[:4]).to_pylist()
    rows[0]["user_id"] = 10**12  # never seen: the out-of-vocabulary id, as a missing one
    rows[1]["user_id"] = None
    rows[1].update(movie_id=None, genres=None, movie_tags=["no-such-tag", None], movie_age=None, rating_hour=None)
    rows[2].update(genres=[], movie_tags=[], num_genres=None)
    rows[3] = {**rows[0], "user_id": None}
    scores = served.score(pa.Table.from_pylist(rows, exported.raw.schema))
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert scores[0] == scores[3]  # unseen and missing both look up row 0
    nothing = pa.Table.from_pylist([{**dict.fromkeys(served.columns), "user_id": 1}])  # Arrow type null
    assert 0 < served.score(nothing)[0] < 1
    # Ids given as text are read as the integers training saw.
    given = exported.raw.take(exported.test_ids[:50])
    as_text = given.set_column(given.schema.get_field_index("user_id"), "user_id", given["user_id"].cast(pa.string()))
    np.testing.assert_array_equal(served.score(as_text), served.score(given))


def _one_line_error(capsys: pytest.CaptureFixture[str], *parts: str) -> str:
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and all(part in error for part in parts), error
    return error


@pytest.mark.slow
def test_predict_end_to_end_from_a_registry_version(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.parquet"
    pq.write_table(exported.raw.take(exported.test_ids).drop_columns(["label"]), rows)
    registry = str(tmp_path / "registry")
    registered = steps.register(str(exported.run), {"auc": 0.7}, registry, "ctr", 0.5, 0.0)
    assert registered["promoted"]
    assert (Path(registered["uri"]) / "export" / "signature.json").is_file()  # exported, registered with it

    out = tmp_path / "scores" / "scores.parquet"
    argv = ["predict", "--model", "production", "--registry", registry, "--input", str(rows), "--output", str(out)]
    assert main([*argv, "--keep", "user_id", "--batch-rows", "500"]) == 0
    assert "ctr version 1" in capsys.readouterr().out
    scores = pq.read_table(out)
    assert scores.column_names == ["probability", "user_id"]
    np.testing.assert_allclose(scores["probability"].to_numpy(), exported.trained, rtol=0, atol=1e-5)
    assert scores["user_id"].to_pylist() == exported.raw.take(exported.test_ids)["user_id"].to_pylist()


@pytest.mark.slow
def test_export_adds_the_artifact_to_a_registered_version(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(exported.run, bare, ignore=shutil.ignore_patterns("export", "checkpoints"))
    registry = str(tmp_path / "registry")
    steps.register(str(bare), {"auc": 0.7}, registry, "ctr", 0.5, 0.0, export=False)
    rows = tmp_path / "rows.parquet"
    pq.write_table(exported.raw.take(exported.test_ids[:10]), rows)
    out = tmp_path / "scores.parquet"
    argv = ["predict", "--model", "ctr:1", "--registry", registry, "--input", str(rows), "--output", str(out)]
    assert main(argv) == 2
    _one_line_error(capsys, "not exported", "wukong export --model ctr:1")
    assert main(["export", "--model", "1", "--registry", registry]) == 0  # the registry's only model
    assert main(argv) == 0
    np.testing.assert_allclose(pq.read_table(out)["probability"].to_numpy(), exported.trained[:10], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing column", "columns movie_id are missing"),
        ("scalar multi-hot", "'genres' must be a list column"),
        ("text in a dense column", "dense column 'movie_age' must hold numbers"),
        ("unknown --keep column", "--keep columns ticket are not in the input"),
    ],
)
def test_bad_rows_fail_with_one_line_and_publish_nothing(
    exported: Exported, tmp_path: Path, case: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = exported.raw.take(exported.test_ids[:20])
    bad = good
    if case == "missing column":
        bad = good.drop_columns(["movie_id"])
    elif case == "scalar multi-hot":
        bad = good.set_column(good.schema.get_field_index("genres"), "genres", pa.array(["Comedy"] * 20))
    elif case == "text in a dense column":
        bad = good.set_column(good.schema.get_field_index("movie_age"), "movie_age", pa.array(["old"] * 20))
    folder = tmp_path / "rows"
    folder.mkdir()
    pq.write_table(good, folder / "part-0.parquet")
    pq.write_table(bad, folder / "part-1.parquet")  # the first file alone would score fine
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"an earlier result")
    argv = ["predict", "--model", str(exported.run), "--input", str(folder), "--output", str(out)]
    assert main([*argv, *(["--keep", "ticket"] if case == "unknown --keep column" else [])]) == 2
    _one_line_error(capsys, "wukong predict:", message)
    assert out.read_bytes() == b"an earlier result"


@pytest.mark.slow
def test_the_program_loads_in_a_fresh_process_with_torch_alone(exported: Exported, tmp_path: Path) -> None:
    """No TorchRec, no wukong: what a serving container with only torch installed does; and `wukong
    predict` itself never imports TorchRec either."""
    folder = exported.run / "export"
    code = f"""
import json, sys, torch
folder = {str(folder)!r}
signature = json.load(open(folder + "/signature.json"))
program = torch.export.load(folder + "/" + signature["files"]["program"]).module()
inputs = []
for tensor in signature["tensors"]:
    if tensor["name"].endswith(".lengths"):
        inputs.append(torch.tensor([1, 0, 3]))
    elif tensor["name"].endswith(".values"):
        inputs.append(torch.ones(4, dtype=torch.int64))
    else:
        shape = [3 if d == "batch" else d for d in tensor["shape"]]
        inputs.append(torch.ones(shape, dtype=getattr(torch, tensor["dtype"])))
p = program(*inputs)
assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all()), p
print(sorted({{m.split(".")[0] for m in sys.modules if m.startswith(("torchrec", "fbgemm", "wukong"))}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    assert json.loads((folder / "signature.json").read_text())["tensors"][0]["name"] == "dense"

    rows, out = tmp_path / "rows.parquet", tmp_path / "scores.parquet"
    pq.write_table(exported.raw.take(exported.test_ids[:5]), rows)
    command = f"predict --model {exported.run} --input {rows} --output {out}".split()
    code = (
        "import sys; from wukong.cli import main; code = main(sys.argv[1:]); "
        "print(code, sorted({m.split('.')[0] for m in sys.modules if m.startswith(('torchrec', 'fbgemm'))}))"
    )
    result = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr[-2000:]
    assert pq.read_table(out).num_rows == 5


def test_an_unknown_model_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WUKONG_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)  # no runs/*/registry here or above: no default registry
    rows, out = str(tmp_path / "rows.parquet"), str(tmp_path / "scores.parquet")
    pq.write_table(pa.table({"x": [1]}), rows)
    assert main(["predict", "--model", str(tmp_path / "nothing"), "--input", rows, "--output", out]) == 2
    _one_line_error(capsys, "not exported")
    assert main(["predict", "--model", "production", "--input", rows, "--output", out]) == 2
    _one_line_error(capsys, "no registry", "--registry")
    registry = str(tmp_path / "registry")
    assert main(["predict", "--model", "ctr:7", "--registry", registry, "--input", rows, "--output", out]) == 2
    _one_line_error(capsys, "no version 7")
    assert main(["export", "--model", str(tmp_path), "--output", str(tmp_path / "e")]) == 2
    _one_line_error(capsys, "no model.pt")
    assert not Path(out).exists()
