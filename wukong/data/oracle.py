"""Oracle probabilities: each row's true label probability, stored beside a dataset's shards.

A source that knows how its labels were drawn (the teacher, :mod:`wukong.data.sources.teacher`)
gives each row's ``p(x)``. ``prepare`` writes them per split as ``oracle-<split>-<run>.parquet``
(columns ``row_id`` int64, ascending, and ``probability`` float64), lists the files in the manifest's
``files`` (``oracle_<split>``) and records in ``statistics.oracle.<split>`` their row count, sha256
and the oracle's LogLoss and expected LogLoss (the mean entropy of ``p``) over the whole split. The
row format and the reader are unchanged: predictions carry row ids, and :func:`read_oracle` looks
their probabilities up by id.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wukong.data.errors import DataError
from wukong.data.manifest import Manifest, read_manifest
from wukong.data.shards import file_sha256
from wukong.io import Storage, open_storage

EPS = 1e-7  # the clamp of wukong.evaluate, so oracle and model LogLoss are computed alike
_SCHEMA = pa.schema([("row_id", pa.int64()), ("probability", pa.float64())])


def oracle_file(split: str) -> str:
    """The manifest ``files`` entry of a split's oracle probabilities."""
    return f"oracle_{split}"


def entropy(p: np.ndarray) -> np.ndarray:
    """``H(p) = -(p log p + (1-p) log(1-p))`` per row: the LogLoss the oracle is expected to score."""
    q = np.clip(p, EPS, 1 - EPS)
    return -(q * np.log(q) + (1 - q) * np.log1p(-q))


def logloss_terms(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``-log p(y)`` per row."""
    q = np.clip(p, EPS, 1 - EPS)
    return -np.where(labels > 0.5, np.log(q), np.log1p(-q))


@dataclass
class _SplitFile:
    path: Path
    writer: pq.ParquetWriter
    rows: int = 0
    logloss: float = 0.0
    entropy: float = 0.0


class OracleWriter:
    """Streams ``(row_id, probability)`` per split into local Parquet files, then publishes them.

    Rows must arrive in ascending row id within each split (``prepare`` writes in source order).
    ``published`` lists the keys uploaded so far, so a failed run can remove them.
    """

    def __init__(self, storage: Storage, run_id: str, workdir: Path) -> None:
        self.storage, self.run_id, self.workdir = storage, run_id, workdir
        self.splits: dict[str, _SplitFile] = {}
        self.published: list[str] = []

    def add(self, split: str, row_ids: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> None:
        if not len(row_ids):
            return
        if split not in self.splits:
            path = self.workdir / f"oracle-{split}-{self.run_id}.parquet"
            self.splits[split] = _SplitFile(path, pq.ParquetWriter(path, _SCHEMA))
        part = self.splits[split]
        table = pa.table(
            {"row_id": pa.array(row_ids, pa.int64()), "probability": pa.array(probabilities, pa.float64())}
        )
        part.writer.write_table(table)
        part.rows += len(row_ids)
        part.logloss += float(logloss_terms(probabilities, labels).sum())
        part.entropy += float(entropy(probabilities).sum())

    def close(self) -> tuple[dict[str, str], dict[str, dict[str, float | int | str]]]:
        """Publish every split's file; returns the manifest's ``files`` entries and ``statistics.oracle``."""
        files, statistics = {}, {}
        for split, part in self.splits.items():
            part.writer.close()
            statistics[split] = {
                "rows": part.rows,
                "sha256": file_sha256(part.path),
                "logloss": part.logloss / part.rows,
                "expected_logloss": part.entropy / part.rows,
            }
            key = part.path.name
            self.storage.upload_file(part.path, key)
            self.published.append(key)
            files[oracle_file(split)] = key
        return files, statistics


@dataclass(frozen=True)
class OracleTable:
    """One split's oracle probabilities, sorted by row id."""

    row_ids: np.ndarray  # int64, ascending
    probabilities: np.ndarray  # float64

    def lookup(self, row_ids: np.ndarray, where: str = "") -> np.ndarray:
        """The probabilities of ``row_ids`` (any order).

        Raises:
            DataError: some row id is not in this split.
        """
        row_ids = np.asarray(row_ids, dtype=np.int64)
        positions = np.minimum(np.searchsorted(self.row_ids, row_ids), len(self.row_ids) - 1)
        missing = self.row_ids[positions] != row_ids
        if missing.any():
            raise DataError(
                f"{where}: {int(missing.sum())} row ids (e.g. {int(row_ids[missing][0])}) have no oracle probability; "
                "the predictions are not from this split of this dataset"
            )
        return self.probabilities[positions]


def has_oracle(manifest: Manifest, split: str) -> bool:
    return oracle_file(split) in manifest.files


def read_oracle(uri: str, split: str, manifest: Manifest | None = None) -> OracleTable | None:
    """The oracle probabilities of ``split`` of the dataset at ``uri``, or None if it has none.

    Raises:
        DataError: the file does not match the manifest's sha256 (corrupt or modified).
    """
    storage = open_storage(uri)
    manifest = manifest or read_manifest(storage)
    if not has_oracle(manifest, split):
        return None
    key = manifest.files[oracle_file(split)]
    expected = manifest.statistics.get("oracle", {}).get(split, {}).get("sha256")
    return _load(storage.uri(), key, expected)


@functools.lru_cache(maxsize=8)
def _load(root: str, key: str, sha256: str | None) -> OracleTable:
    """Cached by key: a key names one run's file, which is never rewritten in place."""
    storage = open_storage(root)
    data = storage.read_bytes(key)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(
            f"{storage.uri(key)}: sha256 mismatch (manifest {sha256[:12]}…, read {digest[:12]}…): the oracle file "
            "is corrupt or was modified; re-run `wukong data prepare`"
        )
    table = pq.read_table(pa.BufferReader(data))
    return OracleTable(
        table.column("row_id").to_numpy().astype(np.int64, copy=False),
        table.column("probability").to_numpy().astype(np.float64, copy=False),
    )
