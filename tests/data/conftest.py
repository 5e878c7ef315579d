"""Helpers for data tests: small Criteo inputs."""

from __future__ import annotations

import gzip
from pathlib import Path


def criteo_lines(count: int, seed: int = 0) -> list[str]:
    """``count`` well-formed Criteo rows with varied labels, dense values and categorical ids."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        dense = [str(rng.randint(-1, 50)) if rng.random() > 0.1 else "" for _ in range(13)]
        cats = [f"{rng.randint(0, 40):08x}" if rng.random() > 0.05 else "" for _ in range(26)]
        lines.append("\t".join([str(rng.randint(0, 1)), *dense, *cats]))
    return lines


def write_criteo(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path
