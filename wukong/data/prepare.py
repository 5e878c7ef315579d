"""``wukong data prepare``: a source's raw rows → a published dataset of WebDataset shards.

Two passes over the source (three with a time split), so memory is bounded by a chunk and the
vocabularies whatever the input size:

0. (time split only) a reservoir sample of the time column fixes the valid/test cut-offs;
1. *fit*: validate rows, count rejects, assign splits, fit vocabularies and dense statistics on the
   **training rows only**. Too many rejects → fail here, before anything is written;
2. *write*: encode every row and append it to its split's shards.

Publication is all-or-nothing: shards, vocabulary, rejects and oracle probabilities (sources that know
each row's true probability, see :mod:`wukong.data.oracle`) carry this run's id in their names and
``manifest.json`` is written last. An existing dataset is replaced only with ``overwrite=True``, and
only when the new manifest lands; then the old run's objects are removed. Objects left by an
interrupted run (no manifest references them) are removed at the start of the next run.
"""

from __future__ import annotations

import datetime
import io
import json
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wukong import __version__
from wukong.data.errors import DataError
from wukong.data.manifest import MANIFEST, SPLITS, Manifest, read_manifest
from wukong.data.oracle import OracleWriter
from wukong.data.preprocess import (
    SPLIT_CODES,
    ColumnSplit,
    DenseStats,
    FrequencyVocabulary,
    HashEncoder,
    RatioSplit,
    Reservoir,
    TimeSplit,
    transform_dense,
)
from wukong.data.rows import Jagged, Layout, RowBlock
from wukong.data.shards import ShardWriter
from wukong.data.sources.base import Reject, Source
from wukong.io import Storage, open_storage
from wukong.schema import FeatureSchema, SparseFeature

TIME_SAMPLE = 1_000_000
MAX_REJECT_LINES = 10_000


@dataclass
class PrepareOptions:
    """How to turn raw rows into a dataset (see ``wukong data prepare --help``)."""

    shard_rows: int = 200_000
    block_rows: int = 8192
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: str = "ratio"  # or "time"
    seed: int = 0
    categorical: str = "frequency"  # or "hash"
    min_count: int = 1
    max_vocab: int | None = None
    hash_size: int = 1 << 20
    max_reject_ratio: float = 0.001
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.split_by not in ("ratio", "time", "column"):
            raise DataError(f"--split-by must be ratio, time or column, got {self.split_by!r}")
        if self.categorical not in ("frequency", "hash"):
            raise DataError(f"--categorical must be frequency or hash, got {self.categorical!r}")
        if self.shard_rows < 1 or self.block_rows < 1 or self.min_count < 1 or self.hash_size < 2:
            raise DataError("--shard-rows, --block-rows and --min-count must be >= 1, --hash-size >= 2")
        if not 0 <= self.max_reject_ratio <= 1:
            raise DataError(f"--max-reject-ratio must lie in [0, 1], got {self.max_reject_ratio}")
        try:
            RatioSplit(*self.split)
        except ValueError as error:
            raise DataError(f"--split: {error}") from None


@dataclass
class _Rejects:
    counts: Counter = field(default_factory=Counter)
    lines: list[Reject] = field(default_factory=list)

    def add(self, rejects: list[Reject]) -> None:
        for reject in rejects:
            self.counts[reject.reason] += 1
            if len(self.lines) < MAX_REJECT_LINES:
                self.lines.append(reject)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_jsonl(self) -> bytes:
        return "".join(json.dumps({"reason": r.reason, "text": r.text}) + "\n" for r in self.lines).encode()


def _time_split(source: Source, options: PrepareOptions) -> TimeSplit:
    """Cut-offs at the train and train+valid quantiles of the time column (a reservoir sample)."""
    if source.spec.time is None:
        raise DataError(f"--split-by time: the {source.name} source has no time column")
    reservoir = Reservoir(TIME_SAMPLE, np.random.default_rng(options.seed))
    for chunk in source.chunks():
        reservoir.add(pc.fill_null(chunk.table.column(source.spec.time), 0).to_numpy().astype(np.float64))
    if not reservoir.seen:
        return TimeSplit(0, 0)
    train, valid, _ = options.split
    valid_start, test_start = np.quantile(reservoir.sample, [train, train + valid], method="higher")
    return TimeSplit(float(valid_start), float(test_start))


def _splitter(source: Source, options: PrepareOptions) -> RatioSplit | TimeSplit | ColumnSplit:
    if options.split_by == "column":
        if source.spec.split is None:
            raise DataError(f"--split-by column: the {source.name} source names no split column (spec key `split`)")
        return ColumnSplit(source.spec.split)
    if source.spec.split is not None:
        raise DataError(
            f"the feature spec names split column {source.spec.split!r}: pass --split-by column to use that split, "
            "or remove `split` from the spec"
        )
    return _time_split(source, options) if options.split_by == "time" else RatioSplit(*options.split, seed=options.seed)


class _Encoder:
    """The fitted transformation of raw chunks into row blocks, one categorical encoder per feature."""

    def __init__(self, source: Source, options: PrepareOptions) -> None:
        self.spec = source.spec
        self.splitter = _splitter(source, options)
        make = (
            (lambda: FrequencyVocabulary(options.min_count, options.max_vocab))
            if options.categorical == "frequency"
            else (lambda: HashEncoder(options.hash_size))
        )
        self.encoders = {name: make() for name, _ in self.spec.sparse}
        self.dense_stats = {name: DenseStats() for name in self.spec.dense}
        self.label_sum = Counter()
        self.rows = Counter()

    def splits_of(self, table: pa.Table, row_ids: np.ndarray) -> np.ndarray:
        if isinstance(self.splitter, ColumnSplit):
            try:
                return self.splitter.assign(row_ids, table.column(self.splitter.column))
            except ValueError as error:
                raise DataError(f"--split-by column: {error}") from None
        times = None
        if isinstance(self.splitter, TimeSplit):
            times = pc.fill_null(table.column(self.spec.time), 0).to_numpy().astype(np.float64)
        return self.splitter.assign(row_ids, times)

    def fit(self, table: pa.Table, splits: np.ndarray) -> None:
        labels = _labels(table, self.spec.label)
        for name, code in SPLIT_CODES.items():
            mask = splits == code
            self.rows[name] += int(mask.sum())
            self.label_sum[name] += float(labels[mask].sum())
        train = table.filter(pa.array(splits == SPLIT_CODES["train"]))
        for name, _ in self.spec.sparse:
            self.encoders[name].fit(train.column(name))
        for name in self.spec.dense:
            self.dense_stats[name].update(transform_dense(train.column(name)))

    def finish(self) -> None:
        for encoder in self.encoders.values():
            encoder.finish()

    def schema(self) -> FeatureSchema:
        return FeatureSchema(
            dense=self.spec.dense,
            sparse=tuple(SparseFeature(n, self.encoders[n].cardinality, multi) for n, multi in self.spec.sparse),
            label="label",
        )

    def encode(self, table: pa.Table, row_ids: np.ndarray, layout: Layout) -> RowBlock:
        n = table.num_rows
        dense = (
            np.stack([transform_dense(table.column(c)) for c in self.spec.dense], axis=1)
            if self.spec.dense
            else np.zeros((n, 0), np.float32)
        )
        single = [self.encoders[name].encode(table.column(name), multi_hot=False) for name in layout.single]
        multi = {}
        for name in layout.multi:
            offsets, ids = self.encoders[name].encode(table.column(name), multi_hot=True)
            multi[name] = Jagged(offsets, ids)
        return RowBlock(
            row_ids=row_ids,
            labels=_labels(table, self.spec.label).astype(np.float32),
            dense=dense,
            single=np.stack(single, axis=1) if single else np.zeros((n, 0), np.int32),
            multi=multi,
        )

    def vocabulary_table(self) -> pa.Table | None:
        parts = []
        for name, encoder in self.encoders.items():
            if isinstance(encoder, FrequencyVocabulary) and len(encoder.values):
                values = pc.cast(encoder.values, pa.string())  # ints, bytes and strings alike
                parts.append(
                    pa.table(
                        {
                            "feature": pa.array([name] * len(values)),
                            "value": values,
                            "id": pa.array(np.arange(1, len(values) + 1, dtype=np.int32)),
                            "count": pa.array(encoder.counts),
                        }
                    )
                )
        return pa.concat_tables(parts) if parts else None


def _labels(table: pa.Table, column: str) -> np.ndarray:
    return pc.fill_null(pc.cast(table.column(column), pa.float64()), 0).to_numpy()


def _oracle_probabilities(table: pa.Table, column: str) -> np.ndarray:
    return pc.cast(table.column(column), pa.float64()).to_numpy()


def _row_ids(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int64)


def _clean_orphans(storage: Storage, keep: set[str]) -> int:
    """Remove objects of unfinished runs (everything a manifest does not reference)."""
    orphans = [o.key for o in storage.list() if o.key not in keep and not o.key.startswith(".")]
    storage.delete(orphans)
    return len(orphans)


def prepare(
    source: Source, output: str, options: PrepareOptions, progress: Callable[[int], None] | None = None
) -> Manifest:
    """Build and publish a dataset at ``output`` (path, ``file://`` or ``s3://``); returns its manifest.

    Raises:
        DataError: bad input, too many rejected rows, an existing dataset without ``overwrite``.
        StorageError: the output cannot be read or written.
    """
    storage = open_storage(output)
    previous = read_manifest(storage) if storage.exists(MANIFEST) else None
    if previous and not options.overwrite:
        raise DataError(
            f"{storage.uri()}: already holds a dataset ({previous.rows('train')} training rows, run "
            f"{previous.run_id}); pass --overwrite to replace it or choose another --output"
        )
    storage.check_writable()
    _clean_orphans(storage, previous.keys() if previous else set())

    encoder = _Encoder(source, options)
    rejects, row_count = _Rejects(), 0
    for chunk in source.chunks():  # pass 1: fit on the training rows
        rejects.add(chunk.rejects)
        ids = _row_ids(row_count, chunk.table.num_rows)
        encoder.fit(chunk.table, encoder.splits_of(chunk.table, ids))
        row_count += chunk.table.num_rows
        if progress:
            progress(chunk.table.num_rows + len(chunk.rejects))
    seen = row_count + rejects.total
    if seen == 0:
        raise DataError(f"{source.describe().get('input', source.name)}: the input holds no rows")
    if rejects.total > options.max_reject_ratio * seen:
        counts = ", ".join(f"{reason}: {n}" for reason, n in rejects.counts.most_common())
        raise DataError(
            f"{rejects.total} of {seen} rows rejected ({rejects.total / seen:.2%} > --max-reject-ratio "
            f"{options.max_reject_ratio:g}): {counts}; nothing was published"
        )
    if row_count == 0:
        raise DataError(f"{source.describe().get('input', source.name)}: every row was rejected")
    encoder.finish()

    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    layout = Layout.of(encoder.schema())
    with tempfile.TemporaryDirectory(prefix="wukong-shards-") as workdir:
        writer = ShardWriter(storage, run_id, options.shard_rows, options.block_rows, Path(workdir))
        oracle = OracleWriter(storage, run_id, Path(workdir)) if source.spec.oracle else None
        try:
            row_count = 0
            for chunk in source.chunks():  # pass 2: encode and write
                ids = _row_ids(row_count, chunk.table.num_rows)
                block = encoder.encode(chunk.table, ids, layout)
                splits = encoder.splits_of(chunk.table, ids)
                probabilities = _oracle_probabilities(chunk.table, source.spec.oracle) if oracle else None
                for name, code in SPLIT_CODES.items():
                    rows = np.flatnonzero(splits == code)
                    writer.add(name, block.take(rows))
                    if oracle:
                        oracle.add(name, ids[rows], probabilities[rows], block.labels[rows])
                row_count += chunk.table.num_rows
                if progress:
                    progress(chunk.table.num_rows + len(chunk.rejects))
            shards = writer.close()
            files = _write_side_files(storage, run_id, encoder, rejects)
            oracle_files, oracle_statistics = oracle.close() if oracle else ({}, {})
        except BaseException:
            storage.delete(writer.published + (oracle.published if oracle else []))
            raise

    manifest = Manifest(
        schema=encoder.schema(),
        splits={name: shards.get(name, []) for name in SPLITS},
        source={
            **source.describe(),
            "rows_read": seen,
            "rows_rejected": rejects.total,
            "rejects": dict(rejects.counts),
        },
        preprocessing={
            "categorical": next(iter(encoder.encoders.values())).describe() if encoder.encoders else {},
            "dense": "log(1 + max(x, 0)); missing -> 0",
            "split": encoder.splitter.describe(),
            "fitted_on": "train",
            "shard_rows": options.shard_rows,
            "block_rows": options.block_rows,
        },
        statistics={
            "dense": {name: stats.to_dict() for name, stats in encoder.dense_stats.items()},
            "label_mean": {n: encoder.label_sum[n] / encoder.rows[n] if encoder.rows[n] else None for n in SPLITS},
            **({"oracle": oracle_statistics} if oracle_statistics else {}),
        },
        run_id=run_id,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        files={**files, **oracle_files},
    )
    storage.write_bytes(MANIFEST, manifest.to_json().encode())  # the commit point
    if previous:
        storage.delete(sorted(previous.keys() - manifest.keys()))
    return manifest


def _write_side_files(storage: Storage, run_id: str, encoder: _Encoder, rejects: _Rejects) -> dict[str, str]:
    files = {}
    vocabulary = encoder.vocabulary_table()
    if vocabulary is not None:
        buffer = io.BytesIO()
        pq.write_table(vocabulary, buffer)
        files["vocabulary"] = f"vocabulary-{run_id}.parquet"
        storage.write_bytes(files["vocabulary"], buffer.getvalue())
    if rejects.lines:
        files["rejects"] = f"rejects-{run_id}.jsonl"
        storage.write_bytes(files["rejects"], rejects.to_jsonl())
    return files
