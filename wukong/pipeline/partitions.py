"""Data partitions of a recurring run: raw input laid out as ``KEY=VALUE`` folders, one per day (Hive style).

::

    <input_uri>/date=2026-11-21/...      the raw files of one partition (any source's input folder)
    <input_uri>/date=2026-11-22/...
    <dataset_uri>/date=2026-11-22/       the dataset prepared from it (manifest.json records the partition)

A run names its partition (``date=2026-11-22``, for backfills) or takes the newest one there
(``newest``): the greatest value, compared as numbers when every value is an integer
(``day=9 < day=10``), else as text (ISO dates sort as text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from wukong.data.errors import DataError

NEWEST = "newest"
PARTITION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^/=]+$")


@dataclass(frozen=True)
class Partition:
    """One partition: its name (``date=2026-11-22``), its raw input folder and its dataset's URI."""

    name: str
    input_path: Path
    dataset_uri: str


def partitions(input_path: Path) -> list[str]:
    """The ``KEY=VALUE`` folders of ``input_path``, oldest first (see the module's text)."""
    if not input_path.is_dir():
        raise DataError(f"{input_path}: no such folder of partitions (KEY=VALUE folders, e.g. date=2026-11-22)")
    names = [p.name for p in input_path.iterdir() if p.is_dir() and PARTITION.match(p.name)]
    values = [name.split("=", 1)[1] for name in names]
    numeric = all(re.fullmatch(r"-?\d+", v) for v in values)
    return [name for _, name in sorted(zip((int(v) if numeric else v for v in values), names))]


def resolve(partition: str, input_uri: str, dataset_uri: str) -> Partition:
    """The partition ``partition`` names (``newest``, or a ``KEY=VALUE`` folder) of ``input_uri``, and
    where its dataset goes: ``<dataset_uri>/<name>``.

    Raises:
        DataError: no partitions there, or no folder of that name.
    """
    folder = Path(input_uri)
    if partition == NEWEST:
        found = partitions(folder)
        if not found:
            raise DataError(f"{folder}: holds no partitions (KEY=VALUE folders, e.g. date=2026-11-22)")
        partition = found[-1]
    elif not PARTITION.match(partition):
        raise DataError(f"partition {partition!r}: give {NEWEST} or a KEY=VALUE folder name, e.g. date=2026-11-22")
    if not (folder / partition).is_dir():
        raise DataError(f"{folder / partition}: no such partition; the partitions there: {partitions(folder)}")
    return Partition(partition, folder / partition, f"{dataset_uri.rstrip('/')}/{partition}")
