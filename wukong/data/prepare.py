"""``wukong data prepare``: a source's raw rows → a published dataset of WebDataset shards.

The input is parsed once and then read from a local spool, part by part (:mod:`wukong.data.stages`),
so memory is bounded by a chunk and the vocabularies whatever the input size, and ``workers``
processes can share the parts with the same rows and ids as one:

1. *scan*: read and validate every part, spool its valid rows, count rejects. Too many rejects → fail
   here, before anything is written. The parts' row counts give every row its id (its position in
   the source); (time split only) a reservoir sample of the spooled time column fixes the cut-offs;
2. *count*: assign splits and fit vocabularies and dense statistics on the **training rows only**,
   each worker over a run of consecutive parts; the runs' fits merge in part order;
3. *encode*: encode every row and append it to its split's shards (one writer per group of parts);
4. *commit*: side files, then the manifest.

Publication is all-or-nothing: shards, vocabulary, rejects and oracle probabilities (sources that know
each row's true probability, see :mod:`wukong.data.oracle`) carry this run's id in their names and
``manifest.json`` is written last. An existing dataset is replaced only with ``overwrite=True``, and
only when the new manifest lands; then the old run's objects are removed. Objects left by an
interrupted run (no manifest references them) are removed at the start of the next run.
"""

from __future__ import annotations

import copy
import datetime
import functools
import io
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wukong import __version__
from wukong.data.encode import encode_block, value_types
from wukong.data.errors import DataError
from wukong.data.manifest import MANIFEST, SPLITS, Manifest, read_manifest
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
from wukong.data.rows import Layout, RowBlock
from wukong.data.sources.base import Source, SourceSpec
from wukong.data.stages import (
    Rejects,
    Scanned,
    Workers,
    Written,
    count,
    encode,
    groups,
    scan,
    spooled,
    writer_tag,
)
from wukong.data.vocabulary import Extension, base_vocabulary, extend_encoder
from wukong.io import Storage, open_storage
from wukong.schema import FeatureSchema, SparseFeature

TIME_SAMPLE = 1_000_000


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
    extend_vocabulary: str | None = None  # a dataset or model folder whose ids to keep (wukong.data.vocabulary)
    partition: str | None = None  # the partition the input holds (e.g. date=2026-11-22), recorded in the manifest

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


def _time_split(source: Source, options: PrepareOptions, tables: Callable[[], Iterable[pa.Table]]) -> TimeSplit:
    """Cut-offs at the train and train+valid quantiles of the time column (a reservoir sample of the
    valid rows' ``tables``, in source order)."""
    if source.spec.time is None:
        raise DataError(f"--split-by time: the {source.name} source has no time column")
    reservoir = Reservoir(TIME_SAMPLE, np.random.default_rng(options.seed))
    for table in tables():
        reservoir.add(pc.fill_null(table.column(source.spec.time), 0).to_numpy().astype(np.float64))
    if not reservoir.seen:
        return TimeSplit(0, 0)
    train, valid, _ = options.split
    valid_start, test_start = np.quantile(reservoir.sample, [train, train + valid], method="higher")
    return TimeSplit(float(valid_start), float(test_start))


def _splitter(
    source: Source, options: PrepareOptions, tables: Callable[[], Iterable[pa.Table]]
) -> RatioSplit | TimeSplit | ColumnSplit:
    if options.split_by == "column":
        if source.spec.split is None:
            raise DataError(f"--split-by column: the {source.name} source names no split column (spec key `split`)")
        return ColumnSplit(source.spec.split)
    if source.spec.split is not None:
        raise DataError(
            f"the feature spec names split column {source.spec.split!r}: pass --split-by column to use that split, "
            "or remove `split` from the spec"
        )
    if options.split_by == "time":
        return _time_split(source, options, tables)
    return RatioSplit(*options.split, seed=options.seed)


class _Encoder:
    """The fitted transformation of raw chunks into row blocks, one categorical encoder per feature."""

    def __init__(
        self, spec: SourceSpec, splitter: RatioSplit | TimeSplit | ColumnSplit, options: PrepareOptions
    ) -> None:
        self.spec, self.splitter = spec, splitter
        make = (
            (lambda: FrequencyVocabulary(options.min_count, options.max_vocab))
            if options.categorical == "frequency"
            else (lambda: HashEncoder(options.hash_size))
        )
        self.encoders = {name: make() for name, _ in self.spec.sparse}
        self.dense_stats = {name: DenseStats() for name in self.spec.dense}
        self.value_types: dict[str, str] = {}  # of the raw sparse columns: predict casts new rows to them
        self.label_sum = Counter()
        sparse = [name for name, _ in spec.sparse]
        self.base = base_vocabulary(options.extend_vocabulary, sparse, options.categorical, options.hash_size)
        self.extensions: dict[str, Extension] = {}
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
        if not self.value_types or "null" in self.value_types.values():  # a chunk of nulls says nothing
            self.value_types = value_types(table, [name for name, _ in self.spec.sparse])
        train = table.filter(pa.array(splits == SPLIT_CODES["train"]))
        for name, _ in self.spec.sparse:
            self.encoders[name].fit(train.column(name))
        for name in self.spec.dense:
            self.dense_stats[name].update(transform_dense(train.column(name)))

    def compact(self) -> None:
        """Each vocabulary's counts in one table (see :meth:`FrequencyVocabulary.compact`)."""
        for encoder in self.encoders.values():
            encoder.compact()

    def merge(self, other: _Encoder) -> None:
        """Add what ``other`` fitted on the rows of another part (parts merge in source order)."""
        for name, encoder in self.encoders.items():
            encoder.merge(other.encoders[name])
        for name, stats in self.dense_stats.items():
            stats.merge(other.dense_stats[name])
        self.label_sum.update(other.label_sum)
        self.rows.update(other.rows)
        if other.value_types and (not self.value_types or "null" in self.value_types.values()):
            self.value_types = other.value_types

    def finish(self, threads: int = 1) -> None:
        """Finish every feature's encoder (sort and cut its vocabulary), ``threads`` features at a time
        (Arrow's sorts and hashing release the GIL)."""
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda encoder: encoder.finish(), self.encoders.values()))
        for name, encoder in self.encoders.items():
            if self.base is not None and isinstance(encoder, FrequencyVocabulary):
                self.extensions[name] = extend_encoder(encoder, self.base, name)

    def extension_record(self) -> dict:
        """The manifest's ``preprocessing.vocabulary_extends``: the base and what each feature kept and added."""
        return {"from": self.base.where, "features": {n: e.to_dict() for n, e in self.extensions.items()}}

    def schema(self) -> FeatureSchema:
        return FeatureSchema(
            dense=self.spec.dense,
            sparse=tuple(SparseFeature(n, self.encoders[n].cardinality, multi) for n, multi in self.spec.sparse),
            label="label",
        )

    def encode(self, table: pa.Table, row_ids: np.ndarray, layout: Layout) -> RowBlock:
        return encode_block(table, self.spec.dense, self.encoders, layout, row_ids, _labels(table, self.spec.label))

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


def _clean_orphans(storage: Storage, keep: set[str]) -> int:
    """Remove objects of unfinished runs (everything a manifest does not reference)."""
    orphans = [o.key for o in storage.list() if o.key not in keep and not o.key.startswith(".")]
    storage.delete(orphans)
    return len(orphans)


def new_run_id() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def open_output(storage: Storage, options: PrepareOptions) -> Manifest | None:
    """The dataset already at ``storage`` (only with ``overwrite``); objects of unfinished runs removed."""
    previous = read_manifest(storage) if storage.exists(MANIFEST) else None
    if previous and not options.overwrite:
        raise DataError(
            f"{storage.uri()}: already holds a dataset ({previous.rows('train')} training rows, run "
            f"{previous.run_id}); pass --overwrite to replace it or choose another --output"
        )
    storage.check_writable()
    _clean_orphans(storage, previous.keys() if previous else set())
    return previous


def checked_rejects(source: Source, scans: Sequence[Scanned], options: PrepareOptions) -> Rejects:
    """The parts' rejects in part order, once the rows are known to be worth publishing.

    Raises:
        DataError: no rows at all, every row rejected, or more rejects than ``max_reject_ratio`` allows.
    """
    rejects = Rejects()
    for scanned in scans:
        rejects.merge(scanned.rejects)
    seen, rows = sum(s.seen for s in scans), sum(s.rows for s in scans)
    if seen == 0:
        raise DataError(f"{source.describe().get('input', source.name)}: the input holds no rows")
    if rejects.total > options.max_reject_ratio * seen:
        counts = ", ".join(f"{reason}: {n}" for reason, n in rejects.counts.most_common())
        raise DataError(
            f"{rejects.total} of {seen} rows rejected ({rejects.total / seen:.2%} > --max-reject-ratio "
            f"{options.max_reject_ratio:g}): {counts}; nothing was published"
        )
    if rows == 0:
        raise DataError(f"{source.describe().get('input', source.name)}: every row was rejected")
    return rejects


def offsets(scans: Sequence[Scanned]) -> list[int]:
    """Each part's first row id: the valid rows of the parts before it."""
    return [0, *np.cumsum([s.rows for s in scans[:-1]], dtype=np.int64).tolist()] if scans else []


def new_encoder(source: Source, scans: Sequence[Scanned], options: PrepareOptions) -> _Encoder:
    """The unfitted encoder of ``source`` (its splitter reads the spooled time column if it needs it)."""
    tables = lambda: (table for scanned in scans for table in spooled(scanned))  # noqa: E731
    return _Encoder(source.spec, _splitter(source, options, tables), options)


def merged(template: _Encoder, fits: Iterable[_Encoder], threads: int = 1) -> _Encoder:
    """The parts' fits merged in part order, finished (vocabularies sorted and cut) on ``threads`` threads."""
    encoder = copy.deepcopy(template)
    for fitted in fits:
        encoder.merge(fitted)
    encoder.finish(threads)
    return encoder


def _seen(scanned: Scanned) -> int:
    return scanned.seen


def prepare(
    source: Source,
    output: str,
    options: PrepareOptions,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> Manifest:
    """Build and publish a dataset at ``output`` (path, ``file://`` or ``s3://``); returns its manifest.

    ``workers`` processes scan, count and encode the source's parts (:meth:`Source.parts`) side by
    side. The rows, their ids and splits do not depend on it; the shard boundaries do (each worker
    writes its own shards).

    Raises:
        DataError: bad input, too many rejected rows, an existing dataset without ``overwrite``.
        StorageError: the output cannot be read or written.
    """
    if workers < 1:
        raise DataError(f"--workers must be >= 1, got {workers}")
    storage = open_storage(output)
    open_output(storage, options)
    parts = source.parts()
    with (
        tempfile.TemporaryDirectory(prefix="wukong-spool-") as spool,
        Workers(min(workers, len(parts)), preload=source.worker_modules) as pool,
    ):
        scans = pool.map(functools.partial(scan, source, Path(spool)), [(p,) for p in parts], progress, _seen)
        checked_rejects(source, scans, options)
        starts = offsets(scans)
        template = new_encoder(source, scans, options)
        runs = groups([s.rows for s in scans], pool.processes)  # consecutive parts, one run per worker
        runs_parts = [[(scans[i], starts[i]) for i in run] for run in runs]
        fits = pool.map(functools.partial(count, template), [(p,) for p in runs_parts])
        encoder = merged(template, fits, threads=pool.processes)  # the workers' cores are idle meanwhile
        run_id = new_run_id()
        jobs = [(parts, writer_tag(g, len(runs))) for g, parts in enumerate(runs_parts)]
        written = pool.map(
            functools.partial(encode, encoder, storage, run_id, options),
            jobs,
            progress,
            rows=lambda w: w.rows,
            undo=lambda w: storage.delete(w.published),
        )
    return commit(storage, run_id, source.describe(), encoder, scans, written, options)


def commit(
    storage: Storage,
    run_id: str,
    description: dict,
    encoder: _Encoder,
    scans: Sequence[Scanned],
    written: Sequence[Written],
    options: PrepareOptions,
) -> Manifest:
    """Write the side files, then the manifest (the commit point), then remove the replaced dataset."""
    previous = read_manifest(storage) if storage.exists(MANIFEST) else None
    rejects = Rejects()
    for scanned in scans:
        rejects.merge(scanned.rejects)
    files = _write_side_files(storage, run_id, encoder, rejects)
    oracle_statistics = {}
    for part in written:
        files.update(part.oracle_files)
        oracle_statistics.update(part.oracle_statistics)
    manifest = Manifest(
        schema=encoder.schema(),
        splits={name: [shard for part in written for shard in part.shards.get(name, [])] for name in SPLITS},
        source={
            **description,
            "rows_read": sum(s.seen for s in scans),
            "rows_rejected": rejects.total,
            "rejects": dict(rejects.counts),
        },
        preprocessing={
            "categorical": next(iter(encoder.encoders.values())).describe() if encoder.encoders else {},
            "dense": "log(1 + max(x, 0)); missing -> 0",
            "value_types": encoder.value_types,
            "split": encoder.splitter.describe(),
            "fitted_on": "train",
            **({"vocabulary_extends": encoder.extension_record()} if encoder.base is not None else {}),
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
        partition=options.partition,
        files=files,
    )
    storage.write_bytes(MANIFEST, manifest.to_json().encode())  # the commit point
    if previous:
        storage.delete(sorted(previous.keys() - manifest.keys()))
    return manifest


def _write_side_files(storage: Storage, run_id: str, encoder: _Encoder, rejects: Rejects) -> dict[str, str]:
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
