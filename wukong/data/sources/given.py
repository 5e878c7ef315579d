"""Splits given as files: ``wukong data prepare --input train=PATH --input valid=PATH [--input test=PATH]``.

Public benchmarks and production logs often come split already (a benchmark's train/valid/test files,
Criteo's day files). :class:`GivenSplits` reads one source per file, train first, and adds to every
row the split of the file it came from (column :data:`GIVEN_SPLIT`); ``prepare`` then keeps that split
exactly (``--split-by column``), fitting vocabularies and dense statistics on the train file's rows
only. A test file is optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa

from wukong.data.errors import DataError
from wukong.data.sources.base import RawChunk, Source

GIVEN_SPLIT = "input_split"  # the added column: which --input file a row came from
SPLIT_NAMES = ("train", "valid", "test")
REQUIRED = ("train", "valid")


def check_split_names(names: Iterable[str]) -> None:
    """Every name a split, train and valid among them (one line, a :class:`DataError`, otherwise)."""
    names = list(names)
    unknown = [name for name in names if name not in SPLIT_NAMES]
    if unknown:
        raise DataError(f"--input {unknown[0]}=PATH: unknown split {unknown[0]!r}; use train=, valid= or test=")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise DataError(
            f"--input SPLIT=PATH: no {' and no '.join(missing)} file; give train= and valid= (test= is optional)"
        )


class GivenSplits(Source):
    """The rows of ``sources[split]`` (one source per split, all of the same kind) as that split."""

    def __init__(self, sources: dict[str, Source]) -> None:
        check_split_names(sources)
        self.sources = {name: sources[name] for name in SPLIT_NAMES if name in sources}  # train first
        first = self.sources["train"]
        if first.spec.split is not None:
            raise DataError(
                f"the feature spec names split column {first.spec.split!r}, but --input SPLIT=PATH files give the "
                "splits; remove `split` from the spec or give one --input"
            )
        self.name = first.name
        self.spec = replace(first.spec, split=GIVEN_SPLIT)

    def chunks(self) -> Iterator[RawChunk]:
        for split, source in self.sources.items():
            for chunk in source.chunks():
                column = pa.array([split] * chunk.table.num_rows, pa.string())
                yield RawChunk(chunk.table.append_column(GIVEN_SPLIT, column), chunk.rejects)

    def describe(self) -> dict[str, Any]:
        described = {split: source.describe() for split, source in self.sources.items()}
        inputs = {split: d.pop("input", None) for split, d in described.items()}
        return {**described["train"], "inputs": inputs, "split_by": "--input SPLIT=PATH files"}

    @property
    def total_rows(self) -> int | None:
        counts = [source.total_rows for source in self.sources.values()]
        return None if None in counts else sum(counts)
