"""Cutting a stream of row blocks into batches, shuffling rows through a buffer.

The cutter never looks at what a row holds, only at how many rows each block has: run over blocks of
row *positions* (:class:`Positions`) it decides exactly what it would decide over the rows themselves.
That is how :mod:`wukong.data.plan` knows, without reading any data, which rows the first ``k``
batches of a reader held, and how a reader fast-forwards to batch ``k``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

import numpy as np


class Rows(Protocol):
    """What the cutter needs of a block of rows (:class:`wukong.data.rows.RowBlock` is one)."""

    def __len__(self) -> int: ...

    def take(self, index: np.ndarray) -> Self: ...

    def slice(self, start: int, stop: int) -> Self: ...

    @staticmethod
    def concat(blocks: list) -> Rows: ...


R = TypeVar("R", bound=Rows)


@dataclass(frozen=True)
class Positions:
    """Rows standing for their positions in the epoch order: the cutter's input when it plans."""

    at: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.at)

    def take(self, index: np.ndarray) -> Positions:
        return Positions(self.at[index])

    def slice(self, start: int, stop: int) -> Positions:
        return Positions(self.at[start:stop])

    @staticmethod
    def concat(blocks: list[Positions]) -> Positions:
        return blocks[0] if len(blocks) == 1 else Positions(np.concatenate([b.at for b in blocks]))


class BatchCutter(Generic[R]):
    """Batches of ``sizes`` rows from ``blocks``; with ``rng``, rows are shuffled through a buffer.

    Shuffling, the buffer gathers at least ``buffer_rows`` rows (and at least a batch more than half of
    them; or all that remain), permutes them, hands out batches while more than ``buffer_rows // 2``
    rows would stay, then tops up with the next blocks and permutes again. Without ``rng`` rows keep
    their order. Every bit of state is an attribute, so a cutter can start from any state another
    cutter reached (``pool``, ``rng``, ``exhausted``, ``sizes`` left, the blocks not yet ``pulled``).
    """

    def __init__(
        self,
        blocks: Iterable[R],
        sizes: Sequence[int],
        rng: np.random.Generator | None,
        buffer_rows: int,
        *,
        pool: R | None = None,
        exhausted: bool = False,
    ) -> None:
        self.blocks = iter(blocks)
        self.sizes = list(sizes)  # batches still to hand out
        self.rng, self.buffer_rows = rng, buffer_rows
        self.pool = pool  # rows read and not handed out yet, in buffer order
        self.exhausted = exhausted
        self.pulled = 0  # rows taken from `blocks`

    def held(self) -> int:
        return len(self.pool) if self.pool is not None else 0

    def __iter__(self) -> Iterator[R]:
        while self.sizes:
            keep = 0 if self.exhausted or self.rng is None else self.buffer_rows // 2
            while self.sizes and self.held() - self.sizes[0] >= keep:
                size = self.sizes.pop(0)
                pool = self.pool
                batch, self.pool = pool.slice(0, size), pool.slice(size, len(pool))
                yield batch
            if self.sizes:
                self._refill()

    def _refill(self) -> None:
        size = self.sizes[0]
        target = max(self.buffer_rows, size + self.buffer_rows // 2) if self.rng is not None else size
        parts = [self.pool] if self.held() else []
        held = self.held()
        while not self.exhausted and held < target:
            block = next(self.blocks, None)
            if block is None:
                self.exhausted = True
            elif len(block):
                parts.append(block)
                held += len(block)
                self.pulled += len(block)
        if held < size:
            raise RuntimeError(f"internal error: {held} rows left for a batch of {size}")
        pool = type(parts[0]).concat(parts)
        self.pool = pool.take(self.rng.permutation(len(pool))) if self.rng is not None else pool


def advance(cutter: BatchCutter, batches: int) -> BatchCutter:
    """``cutter`` after it handed out ``batches`` batches (their rows are dropped)."""
    stream = iter(cutter)
    for _ in range(batches):
        next(stream)
    return cutter
