"""The Criteo click-log format: ``label, I1..I13, C1..C26`` separated by tabs (plain or gzip).

Integer features may be blank (missing) or negative; categorical features are 8 hex digits or blank.
``--input`` is one file or a folder of them (read in name order). Each plain file is read in parts of
:data:`PART_BYTES` (byte ranges cut at line starts), each gzip file as one part, so that ingest can
read parts in parallel.

Reading is three-speed with one outcome. A compiled pass (:mod:`wukong.data.sources.criteo_scan`)
parses, checks and dictionary-encodes a strictly regular block in one go. The fast path parses any
other block with typed columns (label and categories as bytes, integers as int64) and checks what
typing cannot with a few whole-buffer tests; a block that fails any of them (a byte outside the
format's alphabet, a conversion error, a label other than 0/1, a category that is not 8 hex digits or
blank) is parsed again field by field against :data:`RULES`, which rejects exactly its bad rows with
their reasons. All three paths accept the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wukong.data.errors import DataError
from wukong.data.sources.base import Part, RawChunk, Reject, Source, SourceSpec
from wukong.data.sources.text import (
    OPTIONAL_INT,
    input_files,
    line_ranges,
    open_text,
    parse_lines,
    read_lines,
    to_int,
    validate,
)

NUM_DENSE, NUM_SPARSE = 13, 26
DENSE = tuple(f"int_{i}" for i in range(NUM_DENSE))
SPARSE = tuple(f"cat_{i}" for i in range(NUM_SPARSE))
NAMES = ("label", *DENSE, *SPARSE)
RULES = {
    "label": ("[01]", "label is not 0 or 1"),
    **{name: (OPTIONAL_INT, "non-numeric dense value") for name in DENSE},
    **{name: ("(?:[0-9a-fA-F]{8})?", "bad categorical value") for name in SPARSE},
}
PART_BYTES = 64 << 20
# Every byte of a well-formed block is one of these; any other sends the block down the checked path.
ALPHABET = b"0123456789abcdefABCDEF-\t\r\n"
TYPED = {"label": pa.binary(), **{n: pa.int64() for n in DENSE}, **{n: pa.binary() for n in SPARSE}}
UNTYPED = {name: pa.binary() for name in NAMES}


class CriteoSource(Source):
    name = "criteo"
    spec = SourceSpec(label="label", dense=DENSE, sparse=tuple((n, False) for n in SPARSE))
    worker_modules = ("wukong.data.sources.criteo_scan",)

    def __init__(self, path: Path, part_bytes: int = PART_BYTES) -> None:
        self.path, self.part_bytes = Path(path), part_bytes
        self.files = input_files(self.path)
        for file in self.files:
            open_text(file).close()  # unreadable gzip: fail before any work

    def parts(self) -> list[Part]:
        parts = []
        for file in self.files:
            for start, stop in line_ranges(file, self.part_bytes):
                size = (stop if stop >= 0 else file.stat().st_size) - start
                parts.append(Part(len(parts), str(file), start, stop, size))
        return parts

    def chunks(self) -> Iterator[RawChunk]:
        for part in self.parts():
            yield from self.read(part)

    def read(self, part: Part) -> Iterator[RawChunk]:
        path = Path(part.path)
        for block in read_lines(path, part.start, part.stop):
            skipped: list[Reject] = []
            table = _fast(block, skipped)
            rejects: list[Reject] = []
            if table is None:
                skipped.clear()
                table, rejects = _checked(block, skipped, path)
            yield RawChunk(table, skipped + rejects)

    def describe(self) -> dict[str, Any]:
        files = {"files": len(self.files)} if self.path.is_dir() else {}
        return {"name": self.name, "input": str(self.path), **files}


def _columns(table: pa.Table, categories: dict[str, pa.Array] | None = None) -> pa.Table:
    """Label and integer features as int64 (the checked path reads them as text), categories as bytes
    (or ``categories``, the same values dictionary-encoded)."""

    def integers(name: str) -> pa.ChunkedArray:
        column = table.column(name)
        return column if pa.types.is_integer(column.type) else to_int(column)

    categories = categories or {name: table.column(name) for name in SPARSE}
    return pa.table({"label": integers("label"), **{n: integers(n) for n in DENSE}, **categories})


def _fast(block: bytes, skipped: list[Reject]) -> pa.Table | None:
    """The block's rows if every field is well-formed, else None. Categories come dictionary-encoded.

    The compiled pass (:mod:`~wukong.data.sources.criteo_scan`) takes strictly regular blocks; Arrow's
    typed parse and whole-buffer checks take the rest that are well-formed (blank lines, CRLF line
    ends, 19-digit integers, no final newline).
    """
    from wukong.data.sources.criteo_scan import scan  # Numba loads on first use, not with the CLI

    if (table := scan(block, NAMES)) is not None:
        return table
    if block.translate(None, ALPHABET):
        return None
    try:
        table = parse_lines(block, NAMES, "\t", TYPED, skipped)
    except pa.ArrowInvalid:  # a dense field is not an integer (or the block holds no line)
        return None
    if not table.num_rows:
        return _columns(table)
    if not pc.all(pc.is_in(table.column("label"), pa.array([b"0", b"1"]))).as_py():
        return None
    categories = {}
    for name in SPARSE:  # encoded first, so that only the distinct values need checking
        categories[name] = pc.dictionary_encode(table.column(name))
        if not _hex_or_blank(categories[name].chunk(0).dictionary):
            return None
    return _columns(table, categories)


def _hex_or_blank(values: pa.BinaryArray) -> bool:
    """Whether every value is blank or 8 bytes without ``-`` (after the alphabet check: 8 hex digits)."""
    _, offsets, data = values.buffers()
    offsets = np.frombuffer(offsets, np.int32)[values.offset : values.offset + len(values) + 1]
    lengths = np.diff(offsets)
    if ((lengths != 0) & (lengths != 8)).any():
        return False
    return data is None or not (np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]] == ord("-")).any()


def _checked(block: bytes, skipped: list[Reject], path: Path) -> tuple[pa.Table, list[Reject]]:
    """Every field checked against :data:`RULES`: the valid rows, and the others as rejects."""
    try:
        table = parse_lines(block, NAMES, "\t", UNTYPED, skipped)
    except pa.ArrowInvalid as error:
        if "Empty CSV file" not in str(error):
            raise DataError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
        table = pa.table({name: pa.array([], kind) for name, kind in UNTYPED.items()})
    valid, rejects = validate(table, RULES, "\t")
    return _columns(valid), rejects
