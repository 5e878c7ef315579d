"""Any Parquet file or folder of files, described by a feature spec (YAML)::

label: clicked            # numeric; rows with a missing label are rejected
dense: [price, age]       # numeric columns; missing values become 0
sparse:                   # categorical columns of any scalar type...
  - user_id
  - {name: genres, multi_hot: true}   # ...or list columns for multi-hot features
time: event_time          # optional: enables --split-by time
split: fold               # optional: a column of train/valid/test, a split fixed upstream (--split-by column;
                          #   or leave it out and pass --split-column fold)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from wukong.data.errors import DataError
from wukong.data.sources.base import Part, RawChunk, Reject, Source, SourceSpec
from wukong.data.sources.text import NUMBER, REJECT_TEXT_CHARS

BATCH_ROWS = 65_536


def load_feature_spec(path: Path) -> SourceSpec:
    """Read and check a feature spec; every problem is a one-line :class:`DataError` naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: feature spec does not exist; pass --spec with a YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    unknown = set(data) - {"label", "dense", "sparse", "time", "split"}
    if unknown or "label" not in data:
        raise DataError(
            f"{path}: a feature spec has keys label (required), dense, sparse, time, split; "
            f"{'unknown: ' + ', '.join(sorted(unknown)) if unknown else 'label is missing'}"
        )
    sparse = []
    for item in data.get("sparse") or []:
        if isinstance(item, str):
            sparse.append((item, False))
        elif isinstance(item, dict) and "name" in item and set(item) <= {"name", "multi_hot"}:
            sparse.append((str(item["name"]), bool(item.get("multi_hot", False))))
        else:
            raise DataError(f"{path}: sparse entries are a column name or {{name: ..., multi_hot: true}}, got {item!r}")
    return SourceSpec(
        label=str(data["label"]),
        dense=tuple(map(str, data.get("dense") or ())),
        sparse=tuple(sparse),
        time=data.get("time"),
        split=data.get("split"),
    )


class ParquetSource(Source):
    name = "parquet"

    def __init__(self, path: Path, spec_path: Path | None, split_column: str | None = None) -> None:
        """``split_column``: the column naming each row's split (``--split-column``), if the spec names none
        or the same one."""
        self.path = Path(path)
        if spec_path is None:
            raise DataError("the parquet source needs --spec FEATURES.yaml naming label, dense and sparse columns")
        self.spec_path = Path(spec_path)
        self.spec = load_feature_spec(self.spec_path)
        if split_column is not None:
            if self.spec.split not in (None, split_column):
                raise DataError(
                    f"--split-column {split_column} and {self.spec_path}'s split column {self.spec.split!r} differ; "
                    "give one of them"
                )
            self.spec = replace(self.spec, split=split_column)
        self.files = self._files()
        self._check_columns()

    def _files(self) -> list[Path]:
        if not self.path.exists():
            raise DataError(f"{self.path}: input does not exist; check --input")
        files = sorted(self.path.rglob("*.parquet")) if self.path.is_dir() else [self.path]
        if not files:
            raise DataError(f"{self.path}: no *.parquet files in this folder")
        return files

    def _check_columns(self) -> None:
        try:
            schema = pq.read_schema(self.files[0])
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{self.files[0]}: not a readable Parquet file ({error})") from None
        wanted = [self.spec.label, *self.spec.dense, *(n for n, _ in self.spec.sparse)]
        wanted += [c for c in (self.spec.time, self.spec.split) if c]
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise DataError(
                f"{self.files[0]}: columns {', '.join(missing)} named in {self.spec_path} are missing; "
                f"the file has: {', '.join(schema.names)}"
            )
        for name, multi_hot in self.spec.sparse:
            is_list = pa.types.is_list(schema.field(name).type) or pa.types.is_large_list(schema.field(name).type)
            if multi_hot != is_list:
                kind = "a list column" if multi_hot else "a scalar column"
                raise DataError(
                    f"{self.spec_path}: sparse feature {name!r} should be {kind} (it is {schema.field(name).type})"
                )

    def parts(self) -> list[Part]:
        """One part per file."""
        return [Part(i, str(file), bytes=file.stat().st_size) for i, file in enumerate(self.files)]

    def chunks(self) -> Iterator[RawChunk]:
        for part in self.parts():
            yield from self.read(part)

    def read(self, part: Part) -> Iterator[RawChunk]:
        columns = [self.spec.label, *self.spec.dense, *(n for n, _ in self.spec.sparse)]
        columns += [c for c in (self.spec.time, self.spec.split) if c]
        try:
            batches = pq.ParquetFile(part.path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
            for batch in batches:
                yield self._clean(pa.Table.from_batches([batch]))
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{part.path}: not a readable Parquet file ({error})") from None

    def _clean(self, table: pa.Table) -> RawChunk:
        """Reject rows whose label is missing or whose dense values are not numbers."""
        valid = pc.is_valid(table.column(self.spec.label))
        reasons = pc.if_else(valid, "", "missing label")
        converted = {}
        for name in (self.spec.label, *self.spec.dense):
            column = table.column(name)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                matches = pc.fill_null(pc.match_substring_regex(column, f"^(?:{NUMBER})$"), True)
                as_float = pc.cast(pc.if_else(matches, column, None), pa.float64())
                bad = pc.invert(matches)
                reasons = pc.if_else(pc.and_(valid, bad), "non-numeric dense value", reasons)
                valid = pc.and_(valid, pc.invert(bad))
                converted[name] = as_float
            elif not (
                pa.types.is_integer(column.type)
                or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type)
            ):
                raise DataError(f"{self.spec_path}: column {name!r} must be numeric, it is {column.type}")
        for name, column in converted.items():
            table = table.set_column(table.schema.get_field_index(name), name, column)
        rejects = []
        if not pc.all(valid).as_py():
            bad_rows = table.filter(pc.invert(valid))
            for row, reason in zip(bad_rows.to_pylist(), pc.filter(reasons, pc.invert(valid)).to_pylist()):
                rejects.append(Reject(reason, str(row)[:REJECT_TEXT_CHARS]))
            table = table.filter(valid)
        if self.spec.time:
            table = table.set_column(
                table.schema.get_field_index(self.spec.time), self.spec.time, _time_as_int(table.column(self.spec.time))
            )
        return RawChunk(table, rejects)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "input": str(self.path), "spec": str(self.spec_path), "files": len(self.files)}


def _time_as_int(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as int64 seconds; integer columns as they are."""
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
    return pc.cast(column, pa.int64())
