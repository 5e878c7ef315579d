"""Raw-data sources, each streaming with bounded memory: criteo, parquet, movielens, synthetic, teacher."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from wukong.data.errors import DataError
from wukong.data.sources.base import FirstRows, RawChunk, Reject, Source, SourceSpec

if TYPE_CHECKING:
    from wukong.data.sources.teacher import TeacherConfig

SOURCE_NAMES = ("criteo", "parquet", "movielens", "synthetic", "teacher")
GENERATED = ("synthetic", "teacher")  # sources that make their rows (``rows``: how many)
FILE_SOURCES = ("criteo", "parquet")  # sources of one file (or folder) per --input


def open_source(
    name: str,
    input_path: Path | None = None,
    *,
    spec: Path | None = None,
    rows: int | None = None,
    seed: int = 0,
    cardinality: int | None = None,
    teacher: TeacherConfig | None = None,
    split_column: str | None = None,
) -> Source:
    """The source ``name`` reading ``input_path`` (not needed for synthetic and teacher; optional for movielens).

    ``rows``: how many rows to generate (synthetic: 100,000 by default, teacher: 1,000,000), or to read
    from the start of the input (others). ``cardinality``: ids per feature (synthetic: 10,000 by
    default), or the largest cardinality (teacher: it overrides ``teacher.max_cardinality``).
    ``teacher``: the teacher's shape (default :class:`TeacherConfig()`). ``split_column``: the column
    naming each row's split (parquet; instead of the spec's ``split`` key).
    """
    if split_column is not None and name != "parquet":
        raise DataError(f"--split-column names a column of parquet input; the {name} source has no such columns")
    source = _open(name, input_path, spec, rows, seed, cardinality, teacher, split_column)
    return FirstRows(source, rows) if rows and name not in GENERATED else source


def open_given_splits(name: str, inputs: dict[str, Path], **options) -> Source:
    """``--input train=PATH --input valid=PATH [--input test=PATH]``: one ``name`` source per file, each
    file's rows in its split (see :mod:`wukong.data.sources.given`). ``options`` go to :func:`open_source`
    for every file (``rows``: the first rows of each)."""
    from wukong.data.sources.given import GivenSplits, check_split_names

    check_split_names(inputs)
    if name not in FILE_SOURCES:
        raise DataError(f"--input SPLIT=PATH takes the {' and '.join(FILE_SOURCES)} sources, not {name}")
    for split, path in inputs.items():
        if not path.exists():
            raise DataError(f"--input {split}={path}: the file does not exist")
    return GivenSplits({split: open_source(name, path, **options) for split, path in inputs.items()})


def _open(
    name: str,
    input_path: Path | None,
    spec: Path | None,
    rows: int | None,
    seed: int,
    cardinality: int | None,
    teacher: TeacherConfig | None,
    split_column: str | None,
) -> Source:
    if name == "synthetic":
        from wukong.data.sources.synthetic import SyntheticSource

        return SyntheticSource(rows=rows or 100_000, seed=seed, cardinality=cardinality or 10_000)
    if name == "teacher":
        from wukong.data.sources.teacher import TeacherConfig, TeacherSource

        config = teacher or TeacherConfig()
        if cardinality is not None:
            config = dataclasses.replace(config, max_cardinality=cardinality)
        return TeacherSource(rows=rows or 1_000_000, seed=seed, config=config)
    if name == "movielens":
        from wukong.data.sources.movielens import MovieLensSource, download_movielens

        folder = input_path or download_movielens(Path.home() / ".cache" / "wukong")
        return MovieLensSource(folder)
    if input_path is None:
        raise DataError(f"the {name} source needs --input PATH")
    if name == "criteo":
        from wukong.data.sources.criteo import CriteoSource

        return CriteoSource(input_path)
    if name == "parquet":
        from wukong.data.sources.parquet import ParquetSource

        return ParquetSource(input_path, spec, split_column)
    raise DataError(f"unknown source {name!r}; choose one of: {', '.join(SOURCE_NAMES)}")


__all__ = [
    "SOURCE_NAMES",
    "DataError",
    "RawChunk",
    "Reject",
    "Source",
    "SourceSpec",
    "open_given_splits",
    "open_source",
]
