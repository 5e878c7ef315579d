"""Splits given as files (``--input train=PATH --input valid=PATH [--input test=PATH]``): each file's rows
land in exactly its split, and vocabularies and statistics are fitted on the train file alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wukong.cli import main
from wukong.data.manifest import read_manifest
from wukong.data.reader import DatasetReader
from wukong.io import open_storage

from .conftest import criteo_lines, write_criteo

SIZES = {"train": 300, "valid": 70, "test": 50}


def read_split(uri: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row ids, labels and single-hot ids of every row of ``split``, in row-id order."""
    batches = list(DatasetReader(uri, split, batch_size=64, shuffle=False, drop_last=False))
    ids = np.concatenate([b.row_ids.numpy() for b in batches])
    labels = np.concatenate([b.labels.numpy() for b in batches])
    sparse = np.concatenate([b.sparse.values().numpy().reshape(len(b.row_ids), -1, order="F") for b in batches])
    order = np.argsort(ids)
    return ids[order], labels[order], sparse[order]


def prepare_args(source: str, inputs: dict[str, Path], output: Path, *extra: str) -> list[str]:
    given = [item for split, path in inputs.items() for item in ("--input", f"{split}={path}")]
    return ["data", "prepare", "--source", source, *given, "--output", str(output), "--quiet", *extra]


def test_criteo_files_land_in_their_splits(tmp_path: Path) -> None:
    lines = {split: criteo_lines(n, seed=i) for i, (split, n) in enumerate(SIZES.items())}
    inputs = {split: write_criteo(tmp_path / f"{split}.tsv", rows) for split, rows in lines.items()}
    out = tmp_path / "ds"
    assert main(prepare_args("criteo", inputs, out)) == 0
    manifest = read_manifest(open_storage(str(out)))
    assert {s: manifest.rows(s) for s in SIZES} == SIZES
    assert manifest.source["inputs"] == {s: str(p) for s, p in inputs.items()}
    first = 0
    for split, rows in lines.items():  # row ids count rows across the files, train's first
        ids, labels, _ = read_split(str(out), split)
        np.testing.assert_array_equal(ids, np.arange(first, first + len(rows)))
        np.testing.assert_array_equal(labels, [float(line.split("\t")[0]) for line in rows])
        first += len(rows)


def write_events(path: Path, users: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    n = len(users)
    table = pa.table({"clicked": rng.integers(0, 2, n), "price": rng.random(n) * 100, "user": users})
    pq.write_table(table, path)
    return path


def test_vocabularies_and_statistics_come_from_the_train_file(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("label: clicked\ndense: [price]\nsparse: [user]\n")
    inputs = {
        "train": write_events(tmp_path / "train.parquet", ["ann", "bob", "cy"] * 40, seed=0),
        "valid": write_events(tmp_path / "valid.parquet", ["bob", "only-in-valid"] * 10, seed=1),
        "test": write_events(tmp_path / "test.parquet", ["ann", "only-in-test"] * 10, seed=2),
    }
    out = tmp_path / "ds"
    assert main(prepare_args("parquet", inputs, out, "--spec", str(spec))) == 0
    manifest = read_manifest(open_storage(str(out)))
    vocabulary = pq.read_table(out / manifest.files["vocabulary"]).to_pylist()
    assert sorted(r["value"] for r in vocabulary) == ["ann", "bob", "cy"]
    assert manifest.statistics["dense"]["price"]["count"] == 120  # the train file's rows only
    ids = {r["value"]: r["id"] for r in vocabulary}
    _, _, test_ids = read_split(str(out), "test")
    np.testing.assert_array_equal(test_ids[:, 0], [ids["ann"], 0] * 10)  # a value only in test: the OOV id
    _, _, valid_ids = read_split(str(out), "valid")
    np.testing.assert_array_equal(valid_ids[:, 0], [ids["bob"], 0] * 10)


def test_the_test_file_is_optional(tmp_path: Path) -> None:
    inputs = {s: write_criteo(tmp_path / f"{s}.tsv", criteo_lines(SIZES[s], seed=i)) for i, s in enumerate(SIZES)}
    del inputs["test"]
    out = tmp_path / "ds"
    assert main(prepare_args("criteo", inputs, out)) == 0
    manifest = read_manifest(open_storage(str(out)))
    assert (manifest.rows("train"), manifest.rows("valid"), manifest.rows("test")) == (300, 70, 0)


@pytest.mark.parametrize(
    ("given", "extra", "expected"),
    [
        ({"train": "a", "valid": "b"}, ["--split", "0.5,0.25,0.25"], "files give the splits; drop --split"),
        ({"train": "a", "valid": "b"}, ["--split-by", "time"], "files give the splits"),
        ({"train": "a", "holdout": "b"}, [], "--input holdout=PATH: unknown split 'holdout'"),
        ({"train": "a", "valid": "missing"}, [], "--input valid="),
        ({"train": "a"}, [], "no valid file; give train= and valid= (test= is optional)"),
        ({"train": "a", "valid": "b"}, ["--input", "a"], "give one PATH, or one SPLIT=PATH per split"),
        ({"train": "a", "valid": "b"}, ["--source", "synthetic"], "takes the criteo and parquet sources"),
        ({}, ["--input", "a", "--split-column", "fold"], "--split-column names a column of parquet input"),
    ],
)
def test_bad_combinations_are_one_line_and_exit_2(
    tmp_path: Path, given: dict[str, str], extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        write_criteo(tmp_path / name, criteo_lines(20, seed=3))
    inputs = {split: tmp_path / name for split, name in given.items()}
    extra = [str(tmp_path / x) if x in ("a", "b") else x for x in extra]
    code = main(prepare_args("criteo", inputs, tmp_path / "ds", *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    if "missing" in given.values():
        assert f"{tmp_path / 'missing'}: the file does not exist" in err
    assert not (tmp_path / "ds" / "manifest.json").exists()
