"""The compiled Criteo pass: what it accepts comes out exactly as Arrow's path gives it; it gives up on
anything else, and the reader then takes the general path with the same outcome."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from wukong.data.sources import criteo
from wukong.data.sources.criteo import NAMES, TYPED
from wukong.data.sources.criteo_scan import scan
from wukong.data.sources.text import parse_lines


def awkward_lines(count: int, seed: int = 0) -> list[str]:
    """Regular lines with every corner the grammar allows: blanks, signs, leading zeros, 18 digits,
    upper- and lower-case hex, a category in both cases, repeated values."""
    rng = random.Random(seed)
    integers = ["", "0", "-0", "-1", "007", "123456789012345678", "-999999999999999999", "42"]
    categories = ["", "0000abcd", "0000ABCD", "deadBEEF", "ffffffff", "00000000", "a1b2c3d4"]
    lines = []
    for _ in range(count):
        dense = [rng.choice(integers) if rng.random() < 0.5 else str(rng.randint(0, 10**6)) for _ in range(13)]
        cats = [rng.choice(categories) if rng.random() < 0.5 else f"{rng.randrange(2**32):08x}" for _ in range(26)]
        lines.append("\t".join([str(rng.randint(0, 1)), *dense, *cats]))
    return lines


def text(lines: list[str], end: str = "\n") -> bytes:
    return "".join(line + end for line in lines).encode()


def arrow_path(block: bytes) -> pa.Table:
    """What Arrow's typed parse gives, categories dictionary-encoded as the reader encodes them."""
    table = parse_lines(block, NAMES, "\t", TYPED, []).combine_chunks()
    columns = {
        name: pc.dictionary_encode(table.column(name).chunk(0)) if name.startswith("cat_") else table.column(name)
        for name in NAMES
    }
    columns["label"] = pc.cast(pc.cast(table.column("label"), pa.string()), pa.int64())
    return pa.table(columns)


def test_accepted_blocks_come_out_as_arrow_gives_them() -> None:
    block = text(awkward_lines(3000))
    expected, got = arrow_path(block), scan(block, NAMES)
    assert got is not None and got.num_rows == 3000
    assert got.schema == expected.schema
    for name in NAMES:
        want, have = expected.column(name).combine_chunks(), got.column(name).combine_chunks()
        if name.startswith("cat_"):  # the same dictionary, in the same (first-appearance) order
            assert have.dictionary.equals(want.dictionary), name
            assert have.indices.equals(want.indices), name
        else:
            assert have.equals(want), name
    assert got.column("int_0").null_count == expected.column("int_0").null_count > 0
    assert b"0000ABCD" in got.column("cat_0").chunk(0).dictionary.to_pylist()


GOOD = awkward_lines(5, seed=1)


def replace_field(line: str, index: int, value: str) -> str:
    fields = line.split("\t")
    fields[index] = value
    return "\t".join(fields)


@pytest.mark.parametrize(
    "block",
    [
        text([*GOOD[:2], replace_field(GOOD[2], 0, "2")]),  # label outside 0/1
        text([*GOOD[:2], replace_field(GOOD[2], 0, "01")]),  # longer label
        text([replace_field(GOOD[0], 3, "1234567890123456789")]),  # 19 digits: Arrow decides
        text([replace_field(GOOD[0], 3, "-")]),  # a sign without digits
        text([replace_field(GOOD[0], 3, "1-2")]),
        text([replace_field(GOOD[0], 20, "abcdef0")]),  # 7 hex digits
        text([replace_field(GOOD[0], 20, "abcdef012")]),  # 9
        text([replace_field(GOOD[0], 39, "abcdefg0")]),  # not hex, in the last field
        text(["\t".join(GOOD[0].split("\t")[:39])]),  # a field short
        text([GOOD[0] + "\t"]),  # a field over
        text(GOOD)[:-1],  # no final newline
        text(GOOD, "\r\n"),  # CRLF line ends
        text([GOOD[0], "", GOOD[1]]),  # an empty line
        b"",
    ],
)
def test_anything_irregular_is_left_to_the_general_path(block: bytes) -> None:
    assert scan(block, NAMES) is None


def test_the_reader_gives_the_same_rows_whichever_path_takes_a_block(monkeypatch) -> None:
    """Blocks the compiled pass takes and blocks it leaves (CRLF) read to equal tables, and with the
    pass switched off the reader gives those tables too."""
    lines = awkward_lines(6000, seed=2)  # over 1 MiB: Arrow parses it in two pieces
    regular, crlf = text(lines), text(lines, "\r\n")
    compiled, general = criteo._fast(regular, []), criteo._fast(crlf, [])
    assert scan(regular, NAMES) is not None and scan(crlf, NAMES) is None
    monkeypatch.setattr("wukong.data.sources.criteo_scan.scan", lambda block, names: None)
    without = criteo._fast(regular, [])
    for name in NAMES:
        columns = [t.column(name).combine_chunks() for t in (compiled, general, without)]
        if name.startswith("cat_"):  # the same dictionary in the same order as Arrow's path gives
            assert columns[0].dictionary.equals(columns[2].dictionary), name
            assert columns[0].indices.equals(columns[2].indices), name
            columns = [c.cast(pa.binary()) for c in columns]
        assert columns[0].equals(columns[1]) and columns[0].equals(columns[2]), name
