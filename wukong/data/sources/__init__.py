"""Raw-data sources, each streaming with bounded memory: criteo, parquet, movielens, synthetic."""

from __future__ import annotations

from pathlib import Path

from wukong.data.errors import DataError
from wukong.data.sources.base import FirstRows, RawChunk, Reject, Source, SourceSpec

SOURCE_NAMES = ("criteo", "parquet", "movielens", "synthetic")


def open_source(
    name: str,
    input_path: Path | None = None,
    *,
    spec: Path | None = None,
    rows: int | None = None,
    seed: int = 0,
    cardinality: int = 10_000,
) -> Source:
    """The source ``name`` reading ``input_path`` (not needed for synthetic; optional for movielens).

    ``rows``: how many rows to generate (synthetic), or to read from the start of the input (others).
    """
    source = _open(name, input_path, spec, rows, seed, cardinality)
    return FirstRows(source, rows) if rows and name != "synthetic" else source


def _open(
    name: str, input_path: Path | None, spec: Path | None, rows: int | None, seed: int, cardinality: int
) -> Source:
    if name == "synthetic":
        from wukong.data.sources.synthetic import SyntheticSource

        return SyntheticSource(rows=rows or 100_000, seed=seed, cardinality=cardinality)
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

        return ParquetSource(input_path, spec)
    raise DataError(f"unknown source {name!r}; choose one of: {', '.join(SOURCE_NAMES)}")


__all__ = ["SOURCE_NAMES", "DataError", "RawChunk", "Reject", "Source", "SourceSpec", "open_source"]
