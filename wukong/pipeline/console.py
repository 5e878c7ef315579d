"""What a local pipeline run shows: one line per step as it finishes; everything else goes to a log file.

``kfp.local`` (2.17) reports through the ``logging`` module (root logger, ``INFO``: "Executing task
'train'", "Task 'train' finished with status SUCCESS", "Skipping conditional task ...") and prints each
step's output (the executor's JSON, training's log) through ``print`` to ``sys.stdout``, both bound
when each task starts. :func:`quiet_pipeline` therefore

- points ``sys.stdout`` and ``sys.stderr`` at the log file for the run (and at the terminal as well with
  ``verbose``), so kfp.local's handler and prints write there;
- puts a filter on the root logger (handlers are swapped per task by kfp.local, logger filters are
  not) that times each task and, when it ends, writes one line: the step, what it did (from the
  outputs the step wrote to its ``executor_output.json``, the KFP executor's result file) and how long
  it took. A failed step's last log lines follow its line, and :class:`StepFailed` is raised.

kfp.local names a task by its component (``ingest-parts-2``: the compiler numbers repeated ones) and
runs the tasks of a ``dsl.ParallelFor`` at once, each in its own thread and its own
``<loop>-iteration-<i>`` folder; the lines name steps by their display names (``names``), and a
task's start and end are matched by its thread.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"^Executing task '([^']+)'")
FINISHED = re.compile(r"^Task '([^']+)' finished with status (\w+)")
SKIPPED = re.compile(r"^Skipping conditional task '?([^' :]+)")
TAIL_LINES = 15
INDENT = "    "  # kfp.local's prefix on each line of a step's output
NAME_WIDTH = 9

# A step's outputs as its executor wrote them: {"parameters": {name: value}, "artifacts": {name: metadata}}.
Outputs = dict[str, dict[str, Any]]
Describe = Callable[[str, Outputs], str]


class StepFailed(RuntimeError):
    """A pipeline step exited with an error; its last log lines were shown."""

    def __init__(self, step: str, log_path: Path) -> None:
        super().__init__(f"step {step} failed; its output is in {log_path}")
        self.step, self.log_path = step, log_path


class _LogWriter:
    """A text stream that writes to the log file (colour codes removed) and, with ``echo``, to the terminal."""

    def __init__(self, file: TextIO, echo: TextIO | None) -> None:
        self.file, self.echo = file, echo

    def write(self, text: str) -> int:
        self.file.write(ANSI.sub("", text))
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        self.file.flush()
        if self.echo is not None:
            self.echo.flush()

    def isatty(self) -> bool:
        return False


def short_path(uri: str) -> str:
    """A path below the working directory relative to it (what a reader would type), others as they are."""
    if "://" in uri or not os.path.isabs(uri):
        return uri
    relative = os.path.relpath(uri)
    return uri if relative.startswith("..") else relative


@contextlib.contextmanager
def print_restored() -> Iterator[None]:
    """Give ``print`` back as it was: kfp.local (2.17) indents ``print`` by patching ``builtins.print``
    per task, and tasks of a ``ParallelFor`` undo those patches out of order, which leaves every later
    ``print`` of this process indented (a ``--dry-run``'s YAML, for one)."""
    original = builtins.print
    try:
        yield
    finally:
        builtins.print = original


def read_outputs(task_root: Path) -> Outputs:
    """The parameters and artifact metadata a step wrote to ``<task root>/executor_output.json``."""
    path = task_root / "executor_output.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"parameters": {}, "artifacts": {}}
    artifacts = {
        name: (entry.get("artifacts") or [{}])[0].get("metadata", {})
        for name, entry in (data.get("artifacts") or {}).items()
    }
    return {"parameters": data.get("parameterValues") or {}, "artifacts": artifacts}


class _Watcher(logging.Filter):
    """Turns kfp.local's log records into step lines (a logging filter that never drops a record)."""

    def __init__(
        self,
        out: TextIO,
        live: bool,
        log: TextIO,
        log_path: Path,
        pipeline_root: Path,
        describe: Describe,
        skipped: dict[str, str],
        names: dict[str, str],
    ) -> None:
        super().__init__()
        self.out, self.live, self.log, self.log_path = out, live, log, log_path
        self.pipeline_root, self.describe, self.skipped, self.names = pipeline_root, describe, skipped, names
        self.existing_runs = {p for p in pipeline_root.glob("*") if p.is_dir()}
        self.started: dict[tuple[str, int | None], tuple[float, int]] = {}  # (task, thread) -> (start, log offset)
        self.reported: set[Path] = set()  # the outputs already described
        self.lock = threading.Lock()  # the tasks of a loop log from threads of their own
        self.failed: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = ANSI.sub("", record.getMessage())
        with self.lock:
            if match := STARTED.match(message):
                self.log.flush()
                self.started[match[1], record.thread] = (time.monotonic(), self.log.tell())
                if self.live:
                    self.out.write(f"{self.names.get(match[1], match[1]):<{NAME_WIDTH}} running ...\r")
                    self.out.flush()
            elif match := FINISHED.match(message):
                self._finished(match[1], record.thread, match[2] == "SUCCESS")
            elif (match := SKIPPED.match(message)) and match[1] in self.skipped:
                self._line(*self.skipped[match[1]].split(" ", 1))
        return True

    def _line(self, step: str, text: str) -> None:
        clear = "\x1b[K" if self.live else ""  # over the "running ..." line
        self.out.write(f"{step:<{NAME_WIDTH}} {text}{clear}\n")
        self.out.flush()

    def _task_root(self, task: str) -> Path:
        """This run's folder for ``task`` that has not been described yet, the newest output first: in the
        pipeline root's one new run folder (kfp.local names it ``<pipeline>-<timestamp>``), directly or in
        a loop iteration's folder."""
        runs = [p for p in self.pipeline_root.glob("*") if p.is_dir() and p not in self.existing_runs]
        newest = max(runs, key=lambda p: p.stat().st_mtime, default=self.pipeline_root)
        found = [p.parent for p in newest.glob(f"**/{task}/executor_output.json") if p.parent not in self.reported]
        root = max(found, key=lambda p: (p / "executor_output.json").stat().st_mtime, default=newest / task)
        self.reported.add(root)
        return root

    def _finished(self, task: str, thread: int | None, success: bool) -> None:
        began, offset = self.started.pop((task, thread), (time.monotonic(), 0))
        seconds = time.monotonic() - began
        step = self.names.get(task, task)
        if success:
            try:
                what = self.describe(step, read_outputs(self._task_root(task)))
            except (KeyError, TypeError, ValueError):  # outputs of another shape: still one line, never a crash
                what = "done"
            self._line(step, f"{what}  ({seconds:.1f} s)")
            return
        self.failed = step
        self._line(step, f"FAILED after {seconds:.1f} s; its last lines (all of them in {self.log_path}):")
        self.log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            lines = [line.rstrip().removeprefix(INDENT) for line in f if line.strip()]
        for line in lines[-TAIL_LINES:]:
            self.out.write(f"  | {line}\n")
        self.out.flush()


@contextlib.contextmanager
def quiet_pipeline(
    log_path: Path,
    pipeline_root: Path,
    describe: Describe,
    skipped: dict[str, str] | None = None,
    out: TextIO | None = None,
    verbose: bool = False,
    names: dict[str, str] | None = None,
) -> Iterator[None]:
    """Run a kfp.local pipeline call inside this to get one line per step on ``out`` (default: stdout)
    and the rest in ``log_path`` (also on ``out`` with ``verbose``).

    ``describe(step, outputs)`` says what a finished step did; ``skipped`` maps a control-flow task
    that kfp.local skips (a ``dsl.If`` whose condition was false, e.g. ``condition-1``) to the line
    ``"<step> <text>"`` to show instead; ``names`` maps kfp.local's task names to the steps' names
    (their display names; a task not in it is named as kfp.local names it). Raises
    :class:`StepFailed` when a step failed.
    """
    out = out or sys.stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline_root.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    with open(log_path, "w", encoding="utf-8") as log, print_restored():
        live = out.isatty() and not verbose
        watcher = _Watcher(out, live, log, log_path, pipeline_root, describe, skipped or {}, names or {})
        writer = _LogWriter(log, out if verbose else None)
        root.addFilter(watcher)
        root.setLevel(logging.INFO)  # kfp.local logs some steps (skips) outside its own logging context
        try:
            with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):  # type: ignore[type-var]
                try:
                    yield
                except RuntimeError:
                    if watcher.failed is None:
                        raise
        finally:
            root.removeFilter(watcher)
            root.setLevel(level)
    if watcher.failed is not None:
        raise StepFailed(watcher.failed, log_path)
