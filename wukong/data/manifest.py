"""``manifest.json``: the commit marker and table of contents of a dataset.

A dataset is a folder or object prefix holding ``shards/<split>-<run>-NNNNNN.tar`` files, a
vocabulary file, a rejects file, per-split oracle probabilities when the source knows them
(:mod:`wukong.data.oracle`) and ``manifest.json``. The manifest is written **last**, in one
atomic write: a prefix without one is not a dataset, and a reader never sees a half-written one.
Shard and side-file names carry the run id, so a re-run (``--overwrite``) writes beside the old
dataset and replaces it only when its own manifest lands.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from wukong.data.errors import DataError
from wukong.io import Storage
from wukong.schema import FeatureSchema

MANIFEST = "manifest.json"
FORMAT = "wukong-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")


@dataclass
class BlockInfo:
    """One tar member: its data's byte offset and length inside the shard, and its row count."""

    offset: int
    length: int
    rows: int


@dataclass
class ShardInfo:
    path: str  # key relative to the dataset root
    rows: int
    bytes: int
    sha256: str
    blocks: list[BlockInfo]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardInfo:
        return cls(**{**data, "blocks": [BlockInfo(*b) for b in data["blocks"]]})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "blocks": [[b.offset, b.length, b.rows] for b in self.blocks]}


@dataclass
class Manifest:
    schema: FeatureSchema
    splits: dict[str, list[ShardInfo]]
    source: dict[str, Any]
    preprocessing: dict[str, Any]
    statistics: dict[str, Any]
    run_id: str
    created: str
    tool_version: str
    files: dict[str, str] = field(default_factory=dict)  # side files: vocabulary, rejects, oracle_<split>
    partition: str | None = None  # the data partition this dataset holds (``--partition``, e.g. date=2026-11-22)

    def rows(self, split: str) -> int:
        return sum(s.rows for s in self.splits.get(split, []))

    def bytes(self, split: str | None = None) -> int:
        names = [split] if split else list(self.splits)
        return sum(s.bytes for name in names for s in self.splits.get(name, []))

    def keys(self) -> set[str]:
        """Every object this dataset consists of (manifest included)."""
        shards = {s.path for shards in self.splits.values() for s in shards}
        return shards | set(self.files.values()) | {MANIFEST}

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tool_version": self.tool_version,
            "created": self.created,
            "run_id": self.run_id,
            "partition": self.partition,
            "source": self.source,
            "schema": self.schema.to_dict(),
            "preprocessing": self.preprocessing,
            "statistics": self.statistics,
            "files": self.files,
            "splits": {
                name: {"rows": self.rows(name), "shards": [s.to_dict() for s in shards]}
                for name, shards in self.splits.items()
            },
        }
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
                raise DataError(
                    f"{where}: not a {FORMAT} v{FORMAT_VERSION} manifest (format {data.get('format')!r} "
                    f"v{data.get('format_version')}); re-run `wukong data prepare` with this version"
                )
            return cls(
                schema=FeatureSchema.from_dict(data["schema"]),
                splits={n: [ShardInfo.from_dict(s) for s in v["shards"]] for n, v in data["splits"].items()},
                source=data["source"],
                preprocessing=data["preprocessing"],
                statistics=data["statistics"],
                run_id=data["run_id"],
                created=data["created"],
                tool_version=data["tool_version"],
                files=data.get("files", {}),
                partition=data.get("partition"),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{where}: unreadable manifest ({type(error).__name__}: {error})") from None


def read_manifest(storage: Storage) -> Manifest:
    """The dataset's manifest, or a one-line error if the prefix holds no (finished) dataset."""
    where = storage.uri(MANIFEST)
    if not storage.exists(MANIFEST):
        raise DataError(
            f"{storage.uri()}: no {MANIFEST}, so this is not a dataset (never prepared, or the prepare run "
            f"was interrupted); run `wukong data prepare --output {storage.uri()}`"
        )
    return Manifest.from_json(storage.read_bytes(MANIFEST).decode(), where)
