"""The Criteo click-log format: ``label, I1..I13, C1..C26`` separated by tabs (plain or gzip).

Integer features may be blank (missing) or negative; categorical features are 8 hex digits or blank.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from wukong.data.sources.base import RawChunk, Source, SourceSpec
from wukong.data.sources.text import OPTIONAL_INT, open_text, read_delimited, to_int, validate

NUM_DENSE, NUM_SPARSE = 13, 26
DENSE = tuple(f"int_{i}" for i in range(NUM_DENSE))
SPARSE = tuple(f"cat_{i}" for i in range(NUM_SPARSE))
RULES = {
    "label": ("[01]", "label is not 0 or 1"),
    **{name: (OPTIONAL_INT, "non-numeric dense value") for name in DENSE},
    **{name: ("(?:[0-9a-fA-F]{8})?", "bad categorical value") for name in SPARSE},
}


class CriteoSource(Source):
    name = "criteo"
    spec = SourceSpec(label="label", dense=DENSE, sparse=tuple((n, False) for n in SPARSE))

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        open_text(self.path).close()  # missing, a folder or unreadable gzip: fail before any work

    def chunks(self) -> Iterator[RawChunk]:
        for batch, skipped in read_delimited(self.path, ("label", *DENSE, *SPARSE), "\t", header=False):
            valid, rejects = validate(batch, RULES, "\t")
            columns = {"label": to_int(valid.column("label"))}
            columns.update({name: to_int(valid.column(name)) for name in DENSE})
            columns.update({name: valid.column(name) for name in SPARSE})
            yield RawChunk(pa.table(columns), skipped + rejects)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "input": str(self.path)}
