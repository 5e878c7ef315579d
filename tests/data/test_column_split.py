"""``--split-by column``: a split fixed upstream (``--split-column``, or the spec's ``split``) is kept exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wukong.cli import main
from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.sources.parquet import ParquetSource
from wukong.io import open_storage

FOLDS = ["train"] * 70 + ["valid"] * 20 + ["test"] * 10


def write_rows(folder: Path, folds: list[str], split_key: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n = len(folds)
    table = pa.table(
        {
            "clicked": rng.integers(0, 2, n),
            "price": rng.random(n),
            "user": rng.integers(0, 9, n).astype(str),
            "fold": rng.permutation(np.array(folds, dtype=object)).tolist(),  # splits interleaved in the file
        }
    )
    data = folder / "rows.parquet"
    pq.write_table(table, data)
    spec = folder / "spec.yaml"
    spec.write_text("label: clicked\ndense: [price]\nsparse: [user]\n" + ("split: fold\n" if split_key else ""))
    return data, spec


def test_rows_go_to_the_split_their_column_names(tmp_path: Path) -> None:
    data, spec = write_rows(tmp_path, FOLDS)
    manifest = prepare(ParquetSource(data, spec), str(tmp_path / "ds"), PrepareOptions(split_by="column"))
    assert {s: manifest.rows(s) for s in ("train", "valid", "test")} == {"train": 70, "valid": 20, "test": 10}


def test_a_split_column_is_not_ignored_silently(tmp_path: Path) -> None:
    data, spec = write_rows(tmp_path, FOLDS)
    with pytest.raises(DataError, match="pass --split-by column"):
        prepare(ParquetSource(data, spec), str(tmp_path / "ds"), PrepareOptions())


def test_unknown_split_values_and_missing_column_are_explained(tmp_path: Path) -> None:
    data, spec = write_rows(tmp_path, [*FOLDS[:-1], "holdout"])
    with pytest.raises(DataError, match="holds 'holdout'"):
        prepare(ParquetSource(data, spec), str(tmp_path / "ds"), PrepareOptions(split_by="column"))
    data, spec = write_rows(tmp_path, FOLDS, split_key=False)
    with pytest.raises(DataError, match="names no split column"):
        prepare(ParquetSource(data, spec), str(tmp_path / "ds2"), PrepareOptions(split_by="column"))
    assert not (tmp_path / "ds").exists() or not (tmp_path / "ds" / "manifest.json").exists()


def prepare_cli(data: Path, spec: Path, output: Path, *extra: str) -> int:
    argv = ["data", "prepare", "--source", "parquet", "--input", str(data), "--spec", str(spec)]
    return main([*argv, "--output", str(output), "--quiet", *extra])


def test_split_column_flag_names_the_column(tmp_path: Path) -> None:
    data, spec = write_rows(tmp_path, FOLDS, split_key=False)
    assert prepare_cli(data, spec, tmp_path / "ds", "--split-column", "fold") == 0  # implies --split-by column
    manifest = read_manifest(open_storage(str(tmp_path / "ds")))
    assert {s: manifest.rows(s) for s in ("train", "valid", "test")} == {"train": 70, "valid": 20, "test": 10}
    assert manifest.preprocessing["split"] == {"by": "column", "column": "fold"}


@pytest.mark.parametrize(
    ("spec_key", "extra", "expected"),
    [
        (False, ["--split-column", "fold", "--split-by", "time"], "--split-column goes with --split-by column"),
        (False, ["--split-column", "day"], "columns day named in"),
        (True, ["--split-column", "other"], "--split-column other and"),
    ],
)
def test_split_column_mistakes_are_one_line(
    tmp_path: Path, spec_key: bool, extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, spec = write_rows(tmp_path, FOLDS, split_key=spec_key)
    assert prepare_cli(data, spec, tmp_path / "ds", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
