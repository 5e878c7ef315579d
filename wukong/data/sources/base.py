"""What every source yields: chunks of raw, validated columns plus the rows it rejected."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

# The column in which a source with known labelling probabilities (the teacher) gives each row's p(x).
ORACLE_COLUMN = "oracle_probability"


@dataclass(frozen=True)
class SourceSpec:
    """The raw columns a source provides: a label, dense and sparse features, maybe a time column, and
    maybe an ``oracle`` column holding each row's true label probability (float64 in (0, 1))."""

    label: str
    dense: tuple[str, ...]
    sparse: tuple[tuple[str, bool], ...]  # (name, multi_hot)
    time: str | None = None
    split: str | None = None  # a column naming each row's split (train/valid/test): --split-by column
    oracle: str | None = None


@dataclass(frozen=True)
class Reject:
    """A row that was skipped: why, and its text (shortened) for the rejects file."""

    reason: str
    text: str


@dataclass
class RawChunk:
    """Valid rows with the spec's columns (label numeric, dense numeric or null, sparse any scalar or
    list type, time int64), and the rows of the same stretch of input that were rejected."""

    table: pa.Table
    rejects: list[Reject] = field(default_factory=list)

    @classmethod
    def generated(cls, spec: SourceSpec, labels, dense, ids, **extra) -> RawChunk:
        """A chunk of generated rows: ``dense (N, |spec.dense|)`` and ``ids (N, |spec.sparse|)`` arrays
        in the spec's column order, plus any ``extra`` columns (e.g. the oracle probability)."""
        columns = {"label": pa.array(labels), **{name: pa.array(v) for name, v in extra.items()}}
        columns.update({name: pa.array(dense[:, j]) for j, name in enumerate(spec.dense)})
        columns.update({name: pa.array(ids[:, j]) for j, (name, _) in enumerate(spec.sparse)})
        return cls(pa.table(columns))


@dataclass(frozen=True)
class Part:
    """A piece of a source's input that one worker reads on its own: a whole file, or the lines that
    start in the byte range ``[start, stop)`` of a plain-text file (``stop`` -1: to its end).

    A source's rows are its parts' rows, part after part in ``index`` order, so ingest can read the
    parts in parallel and still number the rows as one sequential pass would. ``bytes`` is the part's
    input size, for balancing workers.
    """

    index: int
    path: str = ""
    start: int = 0
    stop: int = -1
    bytes: int = 0


class Source(ABC):
    """A re-iterable stream of raw rows: :meth:`chunks` yields the same rows in the same order each time.

    A source whose input comes in pieces (files, byte ranges) lists them in :meth:`parts` and reads
    one with :meth:`read`; every other source is a single part read by :meth:`chunks`.
    """

    name: str
    spec: SourceSpec
    worker_modules: tuple[str, ...] = ()  # imported once by the ingest workers' server (not per worker)

    @abstractmethod
    def chunks(self) -> Iterator[RawChunk]: ...

    def parts(self) -> list[Part]:
        """The pieces :meth:`read` takes, in source order (default: the whole source as one part)."""
        return [Part(0)]

    def read(self, part: Part) -> Iterator[RawChunk]:
        """The chunks of one of :meth:`parts`; the rows of all parts in order are those of :meth:`chunks`."""
        if part.index != 0:
            raise ValueError(f"the {self.name} source is a single part; there is no part {part.index}")
        return self.chunks()

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What to record in the manifest about where the rows came from."""

    @property
    def total_rows(self) -> int | None:
        """Rows the source will yield, if known in advance (for progress bars)."""
        return None


class FirstRows(Source):
    """The first ``limit`` rows of another source (``--rows`` for file sources: a quick sample)."""

    def __init__(self, source: Source, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"--rows must be >= 1, got {limit}")
        self.source, self.limit = source, limit
        self.name, self.spec = source.name, source.spec

    def chunks(self) -> Iterator[RawChunk]:
        left = self.limit
        for chunk in self.source.chunks():
            if chunk.table.num_rows >= left:
                yield RawChunk(chunk.table.slice(0, left), chunk.rejects)
                return
            left -= chunk.table.num_rows
            yield chunk

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "first_rows": self.limit}

    @property
    def total_rows(self) -> int | None:
        return self.limit
