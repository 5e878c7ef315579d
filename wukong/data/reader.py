"""Reading a prepared dataset as training batches, for one rank of a distributed job.

Example::

    reader = DatasetReader("s3://bucket/criteo", "train", batch_size=4096,
                           rank=rank, world_size=world, num_workers=2, seed=0)
    for epoch in range(epochs):
        for batch in reader:          # Batch(dense, KeyedJaggedTensor, labels, row_ids)
            ...
    state = reader.state_dict()       # {"epoch": e, "batches": k}: resume mid-epoch later
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from wukong.data.batch import Batch
from wukong.data.errors import DataError
from wukong.data.manifest import Manifest, ShardInfo, read_manifest
from wukong.data.plan import Stretch, rank_stretch, shard_order, worker_stretch
from wukong.data.rows import Layout, RowBlock
from wukong.io import open_storage

TensorTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy where NumPy owns writable memory; read-only Arrow buffers are copied (torch needs writable)."""
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def to_tensors(block: RowBlock) -> TensorTuple:
    """(dense, kjt values, kjt lengths, labels, row ids); KJT values are key-major: single-hot keys in
    layout order, then each multi-hot key."""
    n = len(block)
    values = [block.single.T.ravel()] + [j.values for j in block.multi.values()]
    lengths = [np.ones(block.single.size, dtype=np.int64)] + [j.lengths for j in block.multi.values()]
    return (
        _tensor(np.ascontiguousarray(block.dense)),
        torch.from_numpy(np.concatenate(values).astype(np.int64, copy=False)),
        torch.from_numpy(np.concatenate(lengths).astype(np.int64, copy=False)),
        _tensor(block.labels),
        _tensor(block.row_ids) if n else torch.zeros(0, dtype=torch.int64),
    )


def to_batch(tensors: TensorTuple, layout: Layout) -> Batch:
    dense, values, lengths, labels, row_ids = tensors
    sparse = KeyedJaggedTensor(keys=[*layout.single, *layout.multi], values=values, lengths=lengths)
    return Batch(dense, sparse, labels, row_ids)


class _ShardSource:
    """Blocks of rows ``[start, stop)`` of an epoch order, read shard by shard and checked against the manifest."""

    def __init__(self, uri: str, shards: list[ShardInfo], layout: Layout, verify: bool) -> None:
        self.storage = open_storage(uri)
        self.shards, self.layout, self.verify = shards, layout, verify

    def _load(self, shard: ShardInfo) -> bytes:
        data = self.storage.read_bytes(shard.path)
        if self.verify:
            digest = hashlib.sha256(data).hexdigest()
            if digest != shard.sha256 or len(data) != shard.bytes:
                raise DataError(
                    f"{self.storage.uri(shard.path)}: sha256 mismatch (manifest {shard.sha256[:12]}…, read "
                    f"{digest[:12]}…, {len(data)} bytes): the shard is corrupt or was modified; re-run prepare"
                )
        return data

    def blocks(self, order: np.ndarray, stretch: Stretch) -> Iterator[RowBlock]:
        position = 0
        for index in order:
            shard = self.shards[index]
            shard_start, position = position, position + shard.rows
            if position <= stretch.start or shard_start >= stretch.stop:
                continue
            data = memoryview(self._load(shard))
            block_start = shard_start
            for block in shard.blocks:
                lo, hi = max(stretch.start, block_start), min(stretch.stop, block_start + block.rows)
                if lo < hi:
                    rows = RowBlock.from_ipc(data[block.offset : block.offset + block.length], self.layout)
                    yield rows.slice(lo - block_start, hi - block_start) if hi - lo < block.rows else rows
                block_start += block.rows


def _batches(
    blocks: Iterator[RowBlock], sizes: tuple[int, ...], rng: np.random.Generator | None, buffer_rows: int
) -> Iterator[RowBlock]:
    """Cut a stream of blocks into batches of ``sizes``; with ``rng``, shuffle through a row buffer.

    The buffer gathers at least ``buffer_rows`` rows (or all that remain), permutes them, hands out
    batches until half of it is used, and keeps the rest to mix with the next blocks.
    """
    pending: list[RowBlock] = []
    held = 0
    exhausted = False
    sizes_left = list(sizes)
    while sizes_left:
        while not exhausted and held < max(buffer_rows if rng else 0, sizes_left[0]):
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                pending.append(block)
                held += len(block)
        pool = RowBlock.concat(pending)
        if rng is not None:
            pool = pool.take(rng.permutation(len(pool)))
        keep = 0 if exhausted or rng is None else buffer_rows // 2
        used = 0
        while sizes_left and held - used - sizes_left[0] >= keep:
            yield pool.slice(used, used + sizes_left[0])
            used += sizes_left.pop(0)
        if sizes_left and exhausted and held - used < sizes_left[0]:
            raise RuntimeError(f"internal error: {held - used} rows left for a batch of {sizes_left[0]}")
        pending, held = ([pool.slice(used, len(pool))] if used < len(pool) else []), held - used


class _EpochStream(IterableDataset):
    """One epoch of one rank; inside a DataLoader worker, that worker's share of it."""

    def __init__(self, reader: DatasetReader, epoch: int, skip: int) -> None:
        self.uri, self.shards, self.layout = reader.uri, reader.shards, reader.layout
        self.order = shard_order(len(reader.shards), reader.seed, epoch, reader.shuffle)
        self.rank_stretch = reader.stretch
        self.seed, self.epoch, self.rank, self.skip = reader.seed, epoch, reader.rank, skip
        self.shuffle, self.buffer_rows, self.verify = reader.shuffle, reader.shuffle_buffer_rows, reader.verify

    def __iter__(self) -> Iterator[TensorTuple]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        stretch, indices = worker_stretch(self.rank_stretch, workers, worker)
        source = _ShardSource(self.uri, self.shards, self.layout, self.verify)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker]) if self.shuffle else None
        batches = _batches(source.blocks(self.order, stretch), stretch.batch_sizes, rng, self.buffer_rows)
        for index, rows in zip(indices, batches):
            if index >= self.skip:  # resumed: batches before the saved position are replayed, not returned
                yield to_tensors(rows)


def _default_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class DatasetReader:
    """Batches of one split for one rank, equal in number on every rank (see :mod:`wukong.data.plan`).

    Args:
        uri: the dataset (path, ``file://`` or ``s3://``).
        split: ``train``, ``valid`` or ``test``.
        batch_size: rows per batch (the most; see ``drop_last``).
        rank, world_size: this process's place in the job (default: torch.distributed, then
            the ``RANK``/``WORLD_SIZE`` variables, then 0 of 1).
        num_workers: DataLoader worker processes reading in parallel (0: read in this process).
        shuffle: shuffle shard order per epoch and rows through a buffer of ``shuffle_buffer_rows``.
        seed: the seed of every shuffle; epoch e of a run is the same whenever it is read.
        drop_last: True for full batches only; False for every row exactly once.
        verify: check each shard's sha256 against the manifest before using it.
    """

    def __init__(
        self,
        uri: str,
        split: str = "train",
        batch_size: int = 512,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer_rows: int = 65_536,
        drop_last: bool = True,
        verify: bool = True,
    ) -> None:
        default_rank, default_world = _default_rank()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        self.uri, self.split, self.batch_size = uri, split, batch_size
        self.num_workers, self.shuffle, self.seed = num_workers, shuffle, seed
        self.shuffle_buffer_rows, self.drop_last, self.verify = shuffle_buffer_rows, drop_last, verify
        self.manifest: Manifest = read_manifest(open_storage(uri))
        if split not in self.manifest.splits or not self.manifest.rows(split):
            available = [s for s in self.manifest.splits if self.manifest.rows(s)]
            raise DataError(f"{uri}: no rows in split {split!r}; the dataset has: {', '.join(available)}")
        self.shards = self.manifest.splits[split]
        self.layout = Layout.of(self.manifest.schema)
        self.stretch = rank_stretch(self.manifest.rows(split), self.world_size, self.rank, batch_size, drop_last)
        self.epoch = 0
        self.position = 0  # batches of the current epoch already returned

    @property
    def schema(self):
        return self.manifest.schema

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return len(self.stretch.batch_sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[Batch]:
        stream = _EpochStream(self, self.epoch, self.position)
        batches = DataLoader(stream, batch_size=None, num_workers=self.num_workers) if self.num_workers else stream
        for tensors in batches:
            self.position += 1
            yield to_batch(tensors, self.layout)
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches": self.position, "seed": self.seed, "split": self.split}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("split", self.split) != self.split or state.get("seed", self.seed) != self.seed:
            raise ValueError(f"reader state is for split {state.get('split')} seed {state.get('seed')}")
        self.epoch, self.position = int(state["epoch"]), int(state["batches"])
