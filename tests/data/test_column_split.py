"""``--split-by column``: a split fixed upstream (the parquet spec's ``split`` column) is kept exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wukong.data.errors import DataError
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.sources.parquet import ParquetSource

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
