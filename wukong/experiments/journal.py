"""The JSONL journal of an experiment: one line per finished trial, appended atomically.

The journal is what makes an experiment resumable: a trial is finished exactly when its line is in the
file. Only the process that runs the experiment writes it; each line is written with one ``write`` and
``fsync``-ed, so a kill leaves at most a truncated last line, which the next run drops and rewrites.

Example::

    journal = Journal(Path("sweep/sweep.jsonl"))
    journal.append({"id": "wukong-00-s0", "status": "ok", ...})
    journal.records()  # {"wukong-00-s0": {...}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wukong.data.errors import DataError


class Journal:
    """Finished trials by id, persisted as JSON lines in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._repaired = False

    def _repair(self) -> None:
        """Drop a last line cut short by a kill (the trial it described is simply run again)."""
        data = self.path.read_bytes() if self.path.is_file() else b""
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        self._repaired = True

    def records(self) -> dict[str, dict[str, Any]]:
        """Every finished trial's record by id, in the order they finished."""
        if not self.path.is_file():
            return {}
        records: dict[str, dict[str, Any]] = {}
        text = self.path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a last line without its newline was cut short: not finished
        for number, line in enumerate(complete.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{self.path}:{number}: not a JSON record ({error.msg}); remove that line to run the trial again"
                ) from None
            records[record["id"]] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._repaired:
            self._repair()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
