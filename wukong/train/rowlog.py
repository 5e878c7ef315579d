"""Test hook: which rows each training step read, for tests that account for every row of an epoch.

``WUKONG_RECORD_ROWS=<folder>`` makes every rank append one JSON line per step it trains to
``<folder>/rank<r>.jsonl``: ``{"attempt", "step", "epoch", "batch", "rows"}`` (the batch's row ids;
``attempt`` is torchrun's restart count). Unset, nothing is recorded and nothing is wrapped.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from wukong.data.batch import Batch

VARIABLE = "WUKONG_RECORD_ROWS"


class RowLog:
    def __init__(self, folder: Path, rank: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"rank{rank}.jsonl"
        self.attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
        self.fetched: deque[list[int]] = deque()  # row ids of batches fetched, not yet trained on

    @classmethod
    def from_env(cls, rank: int) -> RowLog | None:
        folder = os.environ.get(VARIABLE)
        return cls(Path(folder), rank) if folder else None

    def track(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """``batches``, noting each one's rows as a pipeline fetches it (it trains them first in, first out)."""
        self.fetched.clear()
        for batch in batches:
            self.fetched.append(batch.row_ids.tolist())
            yield batch

    def trained(self, step: int, epoch: int, batch: int) -> None:
        """Step ``step`` trained on the oldest batch fetched, batch ``batch`` of epoch ``epoch``."""
        line = {"attempt": self.attempt, "step": step, "epoch": epoch, "batch": batch, "rows": self.fetched.popleft()}
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")
