"""Shared by the benchmark scripts: where results are recorded, and what machine produced them."""

from __future__ import annotations

import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# --precision of the benchmarks that time training steps: the train.precision settings each measures
PRECISIONS = {"fp32": ("fp32",), "bf16": ("bf16",), "both": ("fp32", "bf16")}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_section(begin: str, end: str, text: str) -> None:
    """Replace the text between ``begin`` and ``end`` in docs/benchmarks.md (append the markers if absent)."""
    body = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = f"{begin}\n{text}\n{end}"
    if begin in body:
        body = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, body, flags=re.S)
    else:
        body = body.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(body)
    print(f"\nwritten to {DOC}")


def publish(begin: str, end: str, header: str, table: str, write: bool) -> None:
    """Print a benchmark's result and, unless told not to, record it in docs/benchmarks.md."""
    print(f"\n{header}\n{table}")
    if write:
        write_section(begin, end, f"{header}\n\n{table}")
