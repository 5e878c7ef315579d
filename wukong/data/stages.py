"""The per-part stages of ``prepare``, runnable in this process, in worker processes or in pipeline pods.

A source's input comes in parts (:meth:`Source.parts`: files, byte ranges of files). Each stage
works on parts independently, so N workers (``--workers``, or the pipeline's ``ParallelFor``) give
the same rows and ids as one:

1. :func:`scan` reads and validates a part **once** and spools its valid rows to local disk as Arrow
   IPC, scalar categorical columns dictionary-encoded; it returns the row count and the rejects.
   The row counts fix every part's first row id (``offset``), so row ids are the rows' positions in
   the whole source whatever the number of workers.
2. :func:`count` fits a fresh copy of the encoder on a run of consecutive spooled parts (the split
   of each row follows from its row id): vocabulary counts, dense statistics, label sums. The runs'
   fits are merged in part order (``prepare``'s vocabulary step).
3. :func:`encode` encodes a group of spooled parts with the merged encoder and writes their shards
   (one shard writer per group, names tagged by the group). ``prepare`` commits: manifest last.

The spool is read, never parsed again: each input byte is parsed and validated once.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wukong.data.manifest import ShardInfo
from wukong.data.oracle import OracleWriter
from wukong.data.preprocess import SPLIT_CODES
from wukong.data.rows import Layout
from wukong.data.shards import ShardWriter
from wukong.data.sources.base import Part, Reject, Source, SourceSpec
from wukong.io import Storage

if TYPE_CHECKING:
    from wukong.data.prepare import PrepareOptions, _Encoder

Progress = Callable[[int], None] | None
MAX_REJECT_LINES = 10_000


@dataclass
class Rejects:
    """Rejected rows: a count per reason, and the first :data:`MAX_REJECT_LINES` rows themselves."""

    counts: Counter = field(default_factory=Counter)
    lines: list[Reject] = field(default_factory=list)

    def add(self, rejects: list[Reject]) -> None:
        for reject in rejects:
            self.counts[reject.reason] += 1
            if len(self.lines) < MAX_REJECT_LINES:
                self.lines.append(reject)

    def merge(self, other: Rejects) -> None:
        self.counts.update(other.counts)
        self.lines.extend(other.lines[: MAX_REJECT_LINES - len(self.lines)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_jsonl(self) -> bytes:
        return "".join(json.dumps({"reason": r.reason, "text": r.text}) + "\n" for r in self.lines).encode()


@dataclass
class Scanned:
    """One part after :func:`scan`: its valid rows (spooled in ``segments``, in order) and its rejects."""

    part: Part
    rows: int
    rejects: Rejects
    segments: list[str]

    @property
    def seen(self) -> int:
        return self.rows + self.rejects.total

    def to_dict(self) -> dict[str, Any]:
        rejects = {"counts": dict(self.rejects.counts), "lines": [[r.reason, r.text] for r in self.rejects.lines]}
        return {"part": asdict(self.part), "rows": self.rows, "rejects": rejects, "segments": self.segments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scanned:
        rejects = Rejects(Counter(data["rejects"]["counts"]), [Reject(*r) for r in data["rejects"]["lines"]])
        return cls(Part(**data["part"]), data["rows"], rejects, data["segments"])


def _spooled(table: pa.Table, spec: SourceSpec) -> pa.Table:
    """The chunk as spooled: one batch, scalar categorical columns dictionary-encoded."""
    table = table.combine_chunks()
    for name, multi_hot in spec.sparse:
        column = table.column(name)
        if not multi_hot and not pa.types.is_dictionary(column.type):
            index = table.schema.get_field_index(name)
            table = table.set_column(
                index, name, pc.dictionary_encode(column.chunk(0) if column.num_chunks else column)
            )
    return table


def scan(source: Source, spool: Path, part: Part, progress: Progress = None) -> Scanned:
    """Read and validate ``part`` once; spool its valid rows under the folder ``spool``."""
    rejects, rows, segments, writer, schema = Rejects(), 0, [], None, None
    try:
        for chunk in source.read(part):
            rejects.add(chunk.rejects)
            if chunk.table.num_rows:
                table = _spooled(chunk.table, source.spec)
                if writer is None or table.schema != schema:  # a new segment when the types change
                    if writer is not None:
                        writer.close()
                    segments.append(str(spool / f"part-{part.index:06d}-{len(segments):04d}.arrow"))
                    schema, writer = table.schema, pa.ipc.new_stream(segments[-1], table.schema)
                writer.write_table(table)
                rows += table.num_rows
            if progress:
                progress(chunk.table.num_rows + len(chunk.rejects))
    finally:
        if writer is not None:
            writer.close()
    return Scanned(part, rows, rejects, segments)


def spooled(scanned: Scanned) -> Iterator[pa.Table]:
    """A part's spooled chunks, in order (memory-mapped, not copied)."""
    for segment in scanned.segments:
        with pa.memory_map(segment) as source:
            for batch in pa.ipc.open_stream(source):
                yield pa.Table.from_batches([batch])


def count(encoder: _Encoder, parts: Sequence[tuple[Scanned, int]], progress: Progress = None) -> _Encoder:
    """A copy of the unfitted ``encoder`` fitted on spooled parts (each with its first row id), in order,
    and compacted: one table of distinct values per vocabulary, however many parts and chunks, so that
    merging the fits of N workers costs N tables per feature, not one per part."""
    fitted = copy.deepcopy(encoder)
    for scanned, offset in parts:
        start = offset
        for table in spooled(scanned):
            ids = np.arange(start, start + table.num_rows, dtype=np.int64)
            fitted.fit(table, fitted.splits_of(table, ids))
            start += table.num_rows
    fitted.compact()
    return fitted


@dataclass
class Written:
    """What :func:`encode` published: shards per split, oracle files and statistics, every key; and the
    input rows it went through (valid and rejected, for progress)."""

    shards: dict[str, list[ShardInfo]]
    oracle_files: dict[str, str]
    oracle_statistics: dict[str, Any]
    published: list[str]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        shards = {split: [s.to_dict() for s in infos] for split, infos in self.shards.items()}
        return {**asdict(self), "shards": shards}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Written:
        shards = {split: [ShardInfo.from_dict(s) for s in infos] for split, infos in data["shards"].items()}
        return cls(**{**data, "shards": shards})


def encode(
    encoder: _Encoder,
    storage: Storage,
    run_id: str,
    options: PrepareOptions,
    parts: Sequence[tuple[Scanned, int]],
    tag: str = "",
    progress: Progress = None,
) -> Written:
    """Encode spooled parts (each with its first row id) in order and write their rows into shards
    tagged ``tag``; on failure, remove what was published and re-raise."""
    spec = encoder.spec
    layout = Layout.of(encoder.schema())
    with tempfile.TemporaryDirectory(prefix="wukong-shards-") as workdir:
        writer = ShardWriter(storage, run_id, options.shard_rows, options.block_rows, Path(workdir), tag=tag)
        oracle = OracleWriter(storage, run_id, Path(workdir)) if spec.oracle else None
        try:
            for scanned, offset in parts:
                start = offset
                for table in spooled(scanned):
                    ids = np.arange(start, start + table.num_rows, dtype=np.int64)
                    block = encoder.encode(table, ids, layout)
                    splits = encoder.splits_of(table, ids)
                    probabilities = pc.cast(table.column(spec.oracle), pa.float64()).to_numpy() if oracle else None
                    for name, code in SPLIT_CODES.items():
                        rows = np.flatnonzero(splits == code)
                        writer.add(name, block.take(rows))
                        if oracle:
                            oracle.add(name, ids[rows], probabilities[rows], block.labels[rows])
                    start += table.num_rows
                    if progress:
                        progress(table.num_rows)
                if progress:
                    progress(scanned.rejects.total)
            shards = writer.close()
            oracle_files, oracle_statistics = oracle.close() if oracle else ({}, {})
        except BaseException:
            storage.delete(writer.published + (oracle.published if oracle else []))
            raise
    published = writer.published + (oracle.published if oracle else [])
    return Written(shards, oracle_files, oracle_statistics, published, sum(s.seen for s, _ in parts))


def groups(weights: Sequence[int], count: int) -> list[range]:
    """At most ``count`` runs of consecutive items (their indices), of about equal total weight, none empty."""
    total = sum(weights) or 1
    bounds = [0]
    for index, running in enumerate(itertools.accumulate(weights)):
        if len(bounds) < count and running >= total * len(bounds) / count and index + 1 < len(weights):
            bounds.append(index + 1)
    bounds.append(len(weights))
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def writer_tag(group: int, groups: int) -> str:
    """The shard-name tag of a group's writer: none when one writer writes everything."""
    return f"{group:03d}" if groups > 1 else ""


class Workers:
    """Runs a stage over many inputs, here (``processes`` 1) or in that many worker processes.

    Workers fork from a server process that imported the stages and ``preload`` and nothing else
    (``forkserver``: no forked Arrow thread pools, and the imports are paid once, not per worker); each
    uses one thread for Arrow. That server takes a second or more to start (Arrow, Numba and the
    compiled loops load), so it starts in the background on entry, and until its first worker is up
    this process runs the inputs itself, in order. Results come back in input order; the first failure
    is re-raised after the others finish.
    """

    def __init__(self, processes: int, preload: Sequence[str] = ()) -> None:
        self.processes, self.preload = processes, list(preload)
        self.pool: ProcessPoolExecutor | None = None
        self.ready = threading.Event()
        self._starter: threading.Thread | None = None

    def __enter__(self) -> Workers:
        if self.processes > 1:
            context = get_context("forkserver")
            context.set_forkserver_preload(
                ["wukong.data.prepare", "wukong.data.sources", "wukong.data.compiled", *self.preload]
            )
            self.pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_one_thread)
            self._starter = threading.Thread(target=self._start, args=(self.pool,), daemon=True)
            self._starter.start()
        return self

    def _start(self, pool: ProcessPoolExecutor) -> None:
        with contextlib.suppress(BaseException):  # a pool that cannot start fails what is submitted to it
            pool.submit(os.getpid).result()  # returns once the server and a first worker are up
        self.ready.set()

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            if self._starter is not None:
                self._starter.join()
            self.pool.shutdown(cancel_futures=True)

    def map(
        self,
        function: Callable,
        inputs: Sequence,
        progress: Progress = None,
        rows: Callable[[Any], int] | None = None,
        undo: Callable[[Any], None] | None = None,
    ) -> list:
        """``[function(*x, progress=...) for x in inputs]``, each input a tuple of arguments.

        Here, ``function`` reports its own progress; from workers, ``progress`` gets ``rows(result)``
        as each input finishes. If an input fails here, the inputs after it are not started; inputs
        already given to workers still finish. Then ``undo`` runs on every result there is, and the
        first failure is re-raised.
        """
        results, failure, local = [], None, 0
        while local < len(inputs) and (self.pool is None or not self.ready.is_set()):
            try:
                results.append(function(*inputs[local], progress=progress))
            except BaseException as error:
                failure = error
                break
            local += 1
        if self.pool is not None and failure is None:
            futures = []
            try:
                for x in inputs[local:]:
                    futures.append(self.pool.submit(function, *x))
            except BaseException as error:  # a pool that could not start: undo what ran here
                failure = error
            for future in futures:
                try:
                    results.append(future.result())
                    if progress and rows:
                        progress(rows(results[-1]))
                except BaseException as error:
                    failure = failure or error
        if failure is not None:
            for result in results:
                if undo:
                    undo(result)
            raise failure
        return results


def _one_thread() -> None:
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
