"""Which rows each rank and DataLoader worker reads in an epoch, so that every rank gets exactly the
same number of batches (TorchRec's collectives hang otherwise) and every row is read at most once.

The epoch's rows are the split's shards concatenated in a seeded, per-epoch shard order; row
positions below refer to that order. Each rank reads one contiguous stretch of it, so ranks need not
align with shard boundaries (uneven shards, or fewer shards than ranks × workers, are fine):

- ``drop_last=True`` (training): ``N = ⌊R / (W·B)⌋`` full batches per rank; the ``R mod (W·B)``
  rows left over differ from epoch to epoch because the shard order does.
- ``drop_last=False`` (evaluation): every row exactly once. Rank r gets ``⌊R/W⌋`` or ``⌈R/W⌉``
  rows, split into ``N = ⌈⌈R/W⌉ / B⌉`` batches of near-equal size (at most B).

Within a rank, batch ``j`` is produced by worker ``j mod K``; each worker reads a contiguous
sub-stretch holding exactly the rows of its batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wukong.data.errors import DataError


@dataclass(frozen=True)
class Stretch:
    """Rows ``[start, stop)`` of the epoch order, emitted as batches of ``batch_sizes``."""

    start: int
    stop: int
    batch_sizes: tuple[int, ...]


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(num_shards)
    return np.random.default_rng([seed, epoch, 0x5A4D]).permutation(num_shards)


def rank_stretch(total_rows: int, world_size: int, rank: int, batch_size: int, drop_last: bool) -> Stretch:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    if drop_last:
        per_rank = total_rows // (world_size * batch_size)
        if per_rank == 0:
            raise DataError(
                f"{total_rows} rows cannot give each of {world_size} ranks one full batch of {batch_size}; "
                "lower the batch size or use drop_last=False"
            )
        rows = per_rank * batch_size
        return Stretch(rank * rows, (rank + 1) * rows, (batch_size,) * per_rank)
    base, extra = divmod(total_rows, world_size)
    start = rank * base + min(rank, extra)
    rows = base + (rank < extra)
    num_batches = math.ceil(math.ceil(total_rows / world_size) / batch_size)
    if rows < num_batches:
        raise DataError(
            f"{total_rows} rows are too few to give each of {world_size} ranks {num_batches} batches; "
            "use fewer ranks or a larger batch size"
        )
    sizes = tuple(len(part) for part in np.array_split(np.arange(rows), num_batches))
    return Stretch(start, start + rows, sizes)


def worker_stretch(rank: Stretch, num_workers: int, worker: int) -> tuple[Stretch, tuple[int, ...]]:
    """The worker's stretch and the rank-level indices of the batches it emits."""
    mine = tuple(range(worker, len(rank.batch_sizes), num_workers))
    before = sum(size for j, size in enumerate(rank.batch_sizes) if j % num_workers < worker)
    rows = sum(rank.batch_sizes[j] for j in mine)
    start = rank.start + before
    return Stretch(start, start + rows, tuple(rank.batch_sizes[j] for j in mine)), mine
