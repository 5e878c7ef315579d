"""Writing row blocks into WebDataset tar shards, one split at a time.

Each tar member ``NNNNNN.arrow`` is one block of rows (Arrow IPC, see :mod:`wukong.data.rows`), so a
shard is a valid WebDataset shard whose samples are blocks. Shards are built in a local temporary
folder and published whole (:meth:`Storage.upload_file`); the manifest records each block's byte
range so readers can also fetch single blocks.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from wukong.data.manifest import BlockInfo, ShardInfo
from wukong.data.rows import RowBlock
from wukong.io import Storage


def shard_key(split: str, run_id: str, index: int, tag: str = "") -> str:
    """``shards/<split>-<run>-NNNNNN.tar``; a writer among several tags its names (``<run>-<tag>-NNNNNN``)."""
    return f"shards/{split}-{run_id}-{tag + '-' if tag else ''}{index:06d}.tar"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _OpenShard:
    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 (closed in close())
        self.rows = 0
        self.blocks: list[BlockInfo] = []

    def add(self, block: RowBlock) -> None:
        data = block.to_ipc()
        info = tarfile.TarInfo(f"{len(self.blocks):06d}.arrow")
        info.size = len(data)
        header = info.tobuf(self.tar.format, self.tar.encoding, self.tar.errors)
        data_offset = self.tar.offset + len(header)
        self.tar.addfile(info, io.BytesIO(data))
        self.blocks.append(BlockInfo(data_offset, len(data), len(block)))
        self.rows += len(block)

    def close(self) -> ShardInfo:
        self.tar.close()
        return ShardInfo(self.key, self.rows, self.path.stat().st_size, file_sha256(self.path), self.blocks)


class ShardWriter:
    """Accumulates rows per split into blocks of ``block_rows`` and shards of ``shard_rows``.

    Call :meth:`add` with any number of rows, then :meth:`close` for the shard list of every split.
    ``published`` lists the keys uploaded so far, so a failed run can remove them. Writers working side
    by side on one run give each a different ``tag``.
    """

    def __init__(
        self, storage: Storage, run_id: str, shard_rows: int, block_rows: int, workdir: Path, tag: str = ""
    ) -> None:
        if shard_rows < 1 or block_rows < 1:
            raise ValueError("shard_rows and block_rows must be >= 1")
        self.storage, self.run_id, self.workdir, self.tag = storage, run_id, workdir, tag
        self.shard_rows, self.block_rows = shard_rows, min(block_rows, shard_rows)
        self.pending: dict[str, list[RowBlock]] = {}
        self.open: dict[str, _OpenShard] = {}
        self.done: dict[str, list[ShardInfo]] = {}
        self.published: list[str] = []

    def add(self, split: str, rows: RowBlock) -> None:
        if len(rows):
            self.pending.setdefault(split, []).append(rows)
            self._drain(split, final=False)

    def _drain(self, split: str, final: bool) -> None:
        queued = self.pending.get(split, [])
        available = sum(map(len, queued))
        while available >= self.block_rows or (final and available):
            shard = self._shard(split)
            size = min(self.block_rows, self.shard_rows - shard.rows, available)
            merged = RowBlock.concat(queued)
            shard.add(merged.slice(0, size))
            queued = [merged.slice(size, len(merged))] if size < len(merged) else []
            available -= size
            if shard.rows == self.shard_rows:
                self._publish(split)
        self.pending[split] = queued

    def _shard(self, split: str) -> _OpenShard:
        if split not in self.open:
            index = len(self.done.setdefault(split, []))
            key = shard_key(split, self.run_id, index, self.tag)
            self.open[split] = _OpenShard(self.workdir / Path(key).name, key)
        return self.open[split]

    def _publish(self, split: str) -> None:
        shard = self.open.pop(split)
        info = shard.close()
        self.storage.upload_file(shard.path, info.path)
        self.published.append(info.path)
        self.done.setdefault(split, []).append(info)

    def close(self) -> dict[str, list[ShardInfo]]:
        for split in list(self.pending):
            self._drain(split, final=True)
        for split in list(self.open):
            self._publish(split)
        return self.done
