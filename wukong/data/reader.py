"""Reading a prepared dataset as training batches, for one rank of a distributed job.

Example::

    reader = DatasetReader("s3://bucket/criteo", "train", batch_size=4096,
                           rank=rank, world_size=world, num_workers=2, seed=0)
    for epoch in range(epochs):
        for batch in reader:          # Batch(dense, KeyedJaggedTensor, labels, row_ids)
            ...
    state = reader.state_dict(batches=k)   # the epoch after k batches: resume there later,
    reader.load_state_dict(state)          # under this world size or another (wukong.data.plan)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from wukong.data.batch import Batch
from wukong.data.errors import DataError
from wukong.data.manifest import Manifest, ShardInfo, read_manifest
from wukong.data.plan import EpochPlan, Leg, RowRanges, rank_stretch, shard_order
from wukong.data.rows import Layout, RowBlock
from wukong.data.shuffle import BatchCutter
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


def epoch_blocks(shards: list[ShardInfo], order: np.ndarray) -> tuple[list[int], list[tuple[int, int]]]:
    """The stored blocks in an epoch's shard order: their row counts and (shard, block) indices."""
    where = [(int(s), b) for s in order for b in range(len(shards[s].blocks))]
    return [shards[s].blocks[b].rows for s, b in where], where


class _ShardSource:
    """Rows of an epoch order, read block by block and checked against the manifest."""

    def __init__(
        self, uri: str, shards: list[ShardInfo], layout: Layout, verify: bool, where: list[tuple[int, int]]
    ) -> None:
        self.storage = open_storage(uri)
        self.shards, self.layout, self.verify, self.where = shards, layout, verify, where
        self._loaded: tuple[int, memoryview] | None = None  # the last shard read: its blocks come in runs

    def _shard(self, index: int) -> memoryview:
        if self._loaded is None or self._loaded[0] != index:
            shard = self.shards[index]
            data = self.storage.read_bytes(shard.path)
            if self.verify:
                digest = hashlib.sha256(data).hexdigest()
                if digest != shard.sha256 or len(data) != shard.bytes:
                    raise DataError(
                        f"{self.storage.uri(shard.path)}: sha256 mismatch (manifest {shard.sha256[:12]}…, read "
                        f"{digest[:12]}…, {len(data)} bytes): the shard is corrupt or was modified; re-run prepare"
                    )
            self._loaded = (index, memoryview(data))
        return self._loaded[1]

    def blocks(self, rows: RowRanges, edges: np.ndarray) -> Iterator[RowBlock]:
        """The rows of ``rows``, one block per stored block they touch."""
        for block, ranges in rows.pieces(edges):
            shard, index = self.where[block]
            info = self.shards[shard].blocks[index]
            stored = RowBlock.from_ipc(self._shard(shard)[info.offset : info.offset + info.length], self.layout)
            if len(ranges) > 1:
                yield stored.take(np.concatenate([np.arange(lo, hi) for lo, hi in ranges]))
            else:
                lo, hi = ranges[0]
                yield stored if hi - lo == len(stored) else stored.slice(lo, hi)

    def rows_at(self, positions: np.ndarray, edges: np.ndarray) -> RowBlock:
        """The rows at ``positions``, in that order."""
        ranges = RowRanges.of(positions)
        rows = RowBlock.concat(list(self.blocks(ranges, edges)))
        return rows.take(np.searchsorted(ranges.to_array(), positions))


class _EpochStream(IterableDataset):
    """One rank's share of the current leg of an epoch; inside a DataLoader worker, that worker's share.

    Resumed ``skip`` batches into the leg, each worker fast-forwards its shuffle to where it stood then
    (planned on row positions: only the rows its buffer held are read again). A DataLoader hands back
    its workers' batches round-robin, so a worker whose batch in the round of ``skip`` is already
    read yields a placeholder (None) for it, which the reader drops: the order stays the batch order.
    """

    def __init__(self, reader: DatasetReader, plan: EpochPlan, where: list[tuple[int, int]], skip: int) -> None:
        self.uri, self.shards, self.layout, self.verify = reader.uri, reader.shards, reader.layout, reader.verify
        self.plan, self.where, self.leg, self.rank, self.skip = plan, where, reader.leg, reader.rank, skip

    def __iter__(self) -> Iterator[TensorTuple | None]:
        info = get_worker_info()
        worker = info.id if info else 0
        plan = self.plan.worker(self.leg, self.rank, worker)
        done = sum(j < self.skip for j in plan.indices)
        replayed = self.plan.replay(self.leg, plan, done)
        source = _ShardSource(self.uri, self.shards, self.layout, self.verify, self.where)
        edges = self.plan.edges
        cutter = BatchCutter(
            source.blocks(plan.rows.slice(replayed.pulled, len(plan.rows)), edges),
            replayed.sizes,
            replayed.rng,
            self.leg.buffer_rows,
            pool=source.rows_at(replayed.pool.at, edges) if replayed.held() else None,
            exhausted=replayed.exhausted,
        )
        round_start = self.skip - self.skip % self.leg.workers
        for _ in (j for j in plan.indices[:done] if j >= round_start):
            yield None
        for rows in cutter:
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
        self.total_rows = self.manifest.rows(split)
        self.leg = Leg(self.world_size, batch_size, max(1, num_workers), shuffle, shuffle_buffer_rows, drop_last)
        self.batches_per_epoch = len(
            rank_stretch(self.total_rows, self.world_size, self.rank, batch_size, drop_last).batch_sizes
        )
        self.set_epoch(0)

    @property
    def schema(self):
        return self.manifest.schema

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank), for an epoch read from its start."""
        return self.batches_per_epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch read so far, earlier legs (other layouts) included."""
        return sum(leg.batches for leg in self.earlier) + self.skip + self.returned

    def batches_left(self) -> int:
        """Batches this rank will still return in the current epoch."""
        if self._finished:
            return self.batches_per_epoch
        return len(self._plan().rank(self.leg, self.rank).batch_sizes) - self.skip - self.returned

    def set_epoch(self, epoch: int) -> None:
        """Read epoch ``epoch`` next, from its start."""
        self._resume_at(epoch, [])

    def _resume_at(self, epoch: int, legs: list[Leg]) -> None:
        if legs and legs[-1].same_layout(self.leg):  # the same layout: continue its leg, same shuffle
            self.earlier, self.skip = tuple(legs[:-1]), legs[-1].batches
        else:
            self.earlier, self.skip = tuple(legs), 0
        self.epoch, self.returned, self._finished = epoch, 0, False
        self._cached: tuple[EpochPlan, list[tuple[int, int]]] | None = None
        self._generation = getattr(self, "_generation", 0) + 1  # iterators of an earlier position go stale

    def _plan(self) -> EpochPlan:
        return self._layout()[0]

    def _layout(self) -> tuple[EpochPlan, list[tuple[int, int]]]:
        if self._cached is None:
            order = shard_order(len(self.shards), self.seed, self.epoch, self.shuffle)
            block_rows, where = epoch_blocks(self.shards, order)
            self._cached = (EpochPlan(block_rows, self.seed, self.epoch, self.earlier), where)
        return self._cached

    def __iter__(self) -> Iterator[Batch]:
        if self._finished:
            self.set_epoch(self.epoch + 1)
        plan, where = self._layout()
        generation = self._generation
        stream = _EpochStream(self, plan, where, self.skip + self.returned)
        batches = DataLoader(stream, batch_size=None, num_workers=self.num_workers) if self.num_workers else stream
        for tensors in batches:
            if generation != self._generation:
                return  # the reader was moved (set_epoch, load_state_dict): this iterator is done
            if tensors is not None:
                self.returned += 1
                yield to_batch(tensors, self.layout)
        if generation == self._generation:
            self._finished = True

    def state_dict(self, batches: int | None = None) -> dict[str, Any]:
        """The data position after ``batches`` batches of the current epoch (default: every batch this
        reader returned, the next epoch's start once it returned them all). A training loop passes the
        batches it trained on, which trail those returned by its prefetching pipeline."""
        epoch, legs = self.epoch, list(self.earlier)
        if batches is None and self._finished:
            epoch, legs = epoch + 1, []
        else:
            before = sum(leg.batches for leg in legs)
            batches = self.position if batches is None else batches
            if not before <= batches <= self.position:
                raise ValueError(f"{batches} batches is outside this epoch's {before}..{self.position} read so far")
            if batches > before:
                legs.append(replace(self.leg, batches=batches - before))
        return {
            "epoch": epoch,
            "legs": [leg.to_dict() for leg in legs],
            "seed": self.seed,
            "split": self.split,
            "rows": self.total_rows,
            "dataset_run": self.manifest.run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("split", self.split) != self.split or state.get("seed", self.seed) != self.seed:
            raise DataError(
                f"{self.uri}: the saved data position is for split {state.get('split')} with seed "
                f"{state.get('seed')}, this reader reads split {self.split} with seed {self.seed}: resume with "
                "the seed the run started with, or start a new run"
            )
        if state.get("dataset_run", self.manifest.run_id) != self.manifest.run_id:
            raise DataError(
                f"{self.uri}: the saved data position is for the dataset prepared by run {state['dataset_run']} "
                f"({state.get('rows')} rows), this one is run {self.manifest.run_id} ({self.total_rows} rows): "
                "resume with the dataset the run started with, or start a new run"
            )
        if "legs" in state:
            legs = [Leg.from_dict(leg) for leg in state["legs"]]
        else:  # a position saved before legs existed: a batch count under this reader's layout
            legs = [replace(self.leg, batches=int(state["batches"]))] if state.get("batches") else []
        self._resume_at(int(state["epoch"]), legs)
