"""The generated MovieLens folder (tests/fixtures.py) serves what the training tests need of it."""

from __future__ import annotations

from pathlib import Path

from wukong.config import TrainConfig
from wukong.data.manifest import read_manifest
from wukong.io import open_storage

from ..fixtures import write_movielens


def test_its_tables_span_every_kind_of_the_hybrid_plan(ml_dataset: str) -> None:
    """Under the default thresholds: row-wise, table-wise (two of them, one per rank of 2) and replicated."""
    train = TrainConfig()
    sizes = {f.name: f.cardinality for f in read_manifest(open_storage(ml_dataset)).schema.sparse}
    row_wise = sorted(n for n, rows in sizes.items() if rows >= train.row_wise_min_rows)
    replicated = sorted(n for n, rows in sizes.items() if rows <= train.data_parallel_max_rows)
    table_wise = sorted(set(sizes) - set(row_wise) - set(replicated))
    assert row_wise == ["movie_id"] and table_wise == ["movie_tags", "user_id"]
    assert replicated == ["genres", "rating_hour", "rating_weekday", "rating_year", "release_year"]


def test_it_is_the_same_folder_on_every_machine(generated_movielens: Path, tmp_path: Path) -> None:
    again = write_movielens(tmp_path / "again")
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        assert (again / name).read_bytes() == (generated_movielens / name).read_bytes(), name
