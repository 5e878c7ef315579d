"""Which rows each rank and DataLoader worker reads in an epoch, so that every rank gets exactly the
same number of batches (TorchRec's collectives hang otherwise), every row is read at most once, and
an epoch interrupted under one world size continues exactly under another.

**Epoch order.** The epoch's rows are the split's shards concatenated in a seeded, per-epoch shard
order; a row's *position* is its index in that order. It does not depend on the world size.

**Legs.** An epoch is read in one or more *legs*. A leg is a layout (world size ``W``, rows per batch
and rank ``b``, DataLoader workers ``K``, shuffle settings, ``drop_last``) applied to the sequence
``S`` of positions the earlier legs left unread, in epoch order (the first leg: all ``R`` rows), plus
the number ``k`` of batches every rank has read in it. Within a leg over ``n = |S|`` rows, rank ``r``
reads one contiguous stretch of ``S``, so ranks need not align with shard boundaries:

- ``drop_last=True`` (training): ``N = ⌊n / (W·b)⌋`` full batches per rank, rank ``r`` reading
  ``S[r·N·b : (r+1)·N·b]``; the ``n mod (W·b)`` rows after the last stretch are left over.
- ``drop_last=False`` (evaluation): every row exactly once. Rank ``r`` gets ``⌊n/W⌋`` or ``⌈n/W⌉``
  rows, split into ``⌈⌈n/W⌉ / b⌉`` batches of near-equal size (at most ``b``).

Within a rank, batch ``j`` is produced by worker ``j mod K``; each worker reads a contiguous
sub-stretch holding exactly the rows of its batches and, shuffling, permutes them through a buffer
seeded by ``(seed, epoch, leg, rank, worker)`` (:class:`wukong.data.shuffle.BatchCutter`).

**Resuming.** A saved data position is the epoch and its list of legs: a few numbers, whatever the
world size that reads them. Which rows a leg's first ``k`` batches held follows from the layout and
``k`` alone (the shuffle looks at row counts, never at row contents), so it is recomputed on
positions only, without reading data. The rule:

- resumed under the layout of the last leg: that leg continues at batch ``k``, the same batches in
  the same order as a run that never stopped (each worker fast-forwards to its state at ``k``);
- under any other layout (another world size, batch split, number of workers or shuffle buffer): a
  new leg starts over the rows not yet read, the unread rows of every earlier leg's stretches and
  its left-over rows, in epoch order.

Rows read by the ``k`` batches of a leg are never read again in that epoch, and no row is skipped:
with the global batch ``B = W·b`` fixed, a leg over ``n`` rows has ``⌊n/B⌋`` steps and reads ``k·B``
rows, so an epoch has ``⌊R/B⌋`` steps however often it is resized and reads every row once but for
``R mod B`` of them. The unread rows of a stretch are its rows past the workers' read frontiers plus
the few held in their shuffle buffers, so a new leg's stretches stay contiguous runs of few shards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from wukong.data.errors import DataError
from wukong.data.shuffle import BatchCutter, Positions, advance


@dataclass(frozen=True)
class Stretch:
    """Rows ``[start, stop)`` of a leg's sequence, emitted as batches of ``batch_sizes``."""

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


class RowRanges:
    """A sequence of epoch positions, ascending, kept as disjoint ranges ``[starts[i], stops[i])``."""

    def __init__(self, starts: np.ndarray, stops: np.ndarray) -> None:
        self.starts = np.asarray(starts, dtype=np.int64)
        self.stops = np.asarray(stops, dtype=np.int64)
        self._ends = np.cumsum(self.stops - self.starts)  # sequence index just past each range

    @classmethod
    def span(cls, start: int, stop: int) -> RowRanges:
        return cls(np.array([start]), np.array([stop])) if stop > start else cls(np.zeros(0), np.zeros(0))

    @classmethod
    def of(cls, positions: np.ndarray) -> RowRanges:
        """The ranges of a set of positions (any order, no repeats)."""
        at = np.sort(np.asarray(positions, dtype=np.int64))
        if len(at) and np.any(np.diff(at) == 0):
            raise ValueError("positions repeat")
        breaks = np.flatnonzero(np.diff(at) != 1) + 1
        return cls(at[np.r_[0, breaks]] if len(at) else at, at[np.r_[breaks - 1, len(at) - 1]] + 1 if len(at) else at)

    @classmethod
    def union(cls, parts: Sequence[RowRanges]) -> RowRanges:
        """The union of disjoint sequences (overlaps are a bug and raise), adjacent ranges merged."""
        starts = np.concatenate([p.starts for p in parts]) if parts else np.zeros(0, np.int64)
        stops = np.concatenate([p.stops for p in parts]) if parts else np.zeros(0, np.int64)
        keep = stops > starts
        starts, stops = starts[keep], stops[keep]
        order = np.argsort(starts, kind="stable")
        starts, stops = starts[order], stops[order]
        if np.any(starts[1:] < stops[:-1]):
            raise RuntimeError("internal error: row ranges overlap")
        new = np.r_[True, starts[1:] != stops[:-1]] if len(starts) else np.zeros(0, bool)
        return cls(starts[new], stops[np.r_[np.flatnonzero(new)[1:] - 1, len(stops) - 1]] if len(starts) else stops)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RowRanges)
            and np.array_equal(self.starts, other.starts)
            and np.array_equal(self.stops, other.stops)
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"[{a}, {b})" for a, b in zip(self.starts[:4].tolist(), self.stops[:4].tolist()))
        return f"RowRanges({len(self)} rows: {shown}{', …' if len(self.starts) > 4 else ''})"

    def slice(self, lo: int, hi: int) -> RowRanges:
        """Elements ``lo`` to ``hi`` (exclusive) of the sequence."""
        hi = min(hi, len(self))
        if hi <= lo:
            return RowRanges.span(0, 0)
        begins = self._ends - (self.stops - self.starts)
        first = int(np.searchsorted(self._ends, lo, side="right"))
        last = int(np.searchsorted(begins, hi, side="left"))
        starts, stops = self.starts[first:last].copy(), self.stops[first:last].copy()
        starts[0] += lo - begins[first]
        stops[-1] -= self._ends[last - 1] - hi
        return RowRanges(starts, stops)

    def to_array(self) -> np.ndarray:
        if not len(self.starts):
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(a, b) for a, b in zip(self.starts.tolist(), self.stops.tolist())])

    def pieces(self, edges: np.ndarray) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        """For each stored block holding rows of this sequence, in order: the block's index and the
        ranges of its rows (relative to the block's first row) that belong to the sequence.
        ``edges[i]`` is the position of block ``i``'s first row; ``edges[-1]`` the epoch's row count."""
        bounds = edges.tolist()
        current, ranges = -1, []
        for start, stop in zip(self.starts.tolist(), self.stops.tolist()):
            block = int(np.searchsorted(edges, start, side="right")) - 1
            while start < stop:
                end = min(stop, bounds[block + 1])
                if block != current:
                    if ranges:
                        yield current, ranges
                    current, ranges = block, []
                ranges.append((start - bounds[block], end - bounds[block]))
                start = end
                if start == bounds[block + 1]:
                    block += 1
        if ranges:
            yield current, ranges


def position_blocks(rows: RowRanges, edges: np.ndarray) -> Iterator[Positions]:
    """The blocks a reader of ``rows`` would see, holding positions instead of rows."""
    for block, ranges in rows.pieces(edges):
        yield Positions(np.concatenate([np.arange(lo, hi) for lo, hi in ranges]) + edges[block])


@dataclass(frozen=True)
class Leg:
    """A layout an epoch was read under, and how many batches every rank read in it (see above)."""

    world_size: int
    batch_size: int  # rows per batch on each rank
    workers: int  # DataLoader workers per rank; 1 for reading in the training process
    shuffle: bool
    buffer_rows: int
    drop_last: bool
    batches: int = 0

    def same_layout(self, other: Leg) -> bool:
        return replace(self, batches=0) == replace(other, batches=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Leg:
        return cls(**data)


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker of one rank reads in a leg."""

    rows: RowRanges  # its rows, in epoch order
    batch_sizes: tuple[int, ...]
    indices: tuple[int, ...]  # the rank-level index of each of its batches
    rng: np.random.Generator | None  # its shuffle


class EpochPlan:
    """Epoch ``epoch`` of a split whose stored blocks, in this epoch's order, hold ``block_rows`` rows,
    after the legs ``earlier`` were read: the rows left, and who reads which of them in the next leg."""

    def __init__(self, block_rows: Sequence[int], seed: int, epoch: int, earlier: Sequence[Leg] = ()) -> None:
        self.edges = np.concatenate([[0], np.cumsum(block_rows, dtype=np.int64)])
        self.seed, self.epoch = seed, epoch
        self.leg_index = 0
        self.remaining = RowRanges.span(0, int(self.edges[-1]))
        for leg in earlier:
            if leg.batches:  # a leg that read nothing changes nothing
                self.remaining = self._after(leg)
                self.leg_index += 1

    def rank(self, leg: Leg, rank: int) -> Stretch:
        """Rank ``rank``'s stretch of :attr:`remaining` in the next leg."""
        n = len(self.remaining)
        if self.leg_index and n < (leg.world_size * leg.batch_size if leg.drop_last else leg.world_size):
            return Stretch(0, 0, ())  # a resumed epoch with too few rows left for another step: it is over
        return rank_stretch(n, leg.world_size, rank, leg.batch_size, leg.drop_last)

    def worker(self, leg: Leg, rank: int, worker: int) -> WorkerPlan:
        stretch, indices = worker_stretch(self.rank(leg, rank), leg.workers, worker)
        rng = np.random.default_rng([self.seed, self.epoch, self.leg_index, rank, worker]) if leg.shuffle else None
        return WorkerPlan(self.remaining.slice(stretch.start, stretch.stop), stretch.batch_sizes, indices, rng)

    def replay(self, leg: Leg, plan: WorkerPlan, batches: int) -> BatchCutter[Positions]:
        """The worker's cutter, run on positions, after it handed out ``batches`` batches."""
        cutter = BatchCutter(position_blocks(plan.rows, self.edges), plan.batch_sizes, plan.rng, leg.buffer_rows)
        return advance(cutter, batches)

    def _after(self, leg: Leg) -> RowRanges:
        """The rows still unread once every rank has read ``leg.batches`` batches of the next leg."""
        total = len(self.rank(leg, 0).batch_sizes)
        if leg.batches > total:
            raise DataError(
                f"the data position says {leg.batches} batches of a leg that has {total}: it belongs to "
                "another dataset or another version of wukong"
            )
        unread = [self.remaining.slice(self.rank(leg, leg.world_size - 1).stop, len(self.remaining))]
        for rank in range(leg.world_size):
            for worker in range(leg.workers):
                plan = self.worker(leg, rank, worker)
                cutter = self.replay(leg, plan, sum(j < leg.batches for j in plan.indices))
                if cutter.pool is not None:
                    unread.append(RowRanges.of(cutter.pool.at))
                unread.append(plan.rows.slice(cutter.pulled, len(plan.rows)))
        return RowRanges.union(unread)
