"""Fixtures for training tests: a MovieLens dataset prepared once, and a way to run `wukong train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.sources import open_source
from wukong.train.distributed import DistEnv

# Small and quick: the tiny preset, batches of 256, at most a few hundred steps.
FAST = ["--config", "tiny", "--batch-size", "256", "--warmup-steps", "20"]


@pytest.fixture(scope="module")
def env() -> Iterator[DistEnv]:
    """A process group of one (gloo on CPU, nccl on a GPU) without touching os.environ, for a module's
    in-process TorchRec sharding tests."""
    cuda = torch.cuda.is_available()
    device, backend = (torch.device("cuda", 0), "nccl") if cuda else (torch.device("cpu"), "gloo")
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    yield DistEnv(0, 1, 0, device, backend)
    dist.destroy_process_group()


@pytest.fixture(scope="session")
def ml_dataset(generated_movielens: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The generated MovieLens folder (tests/fixtures.py) prepared: ~48 000 training rows in 2 shards."""
    out = str(tmp_path_factory.mktemp("ml") / "dataset")
    prepare(open_source("movielens", generated_movielens), out, PrepareOptions(shard_rows=25_000))
    return out


@dataclass
class Run:
    returncode: int
    output: str
    folder: Path

    def card(self) -> dict:
        return json.loads((self.folder / "model_card.json").read_text())

    def history(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / "history.jsonl").read_text().splitlines()]

    def validations(self) -> list[dict]:
        return [r for r in self.history() if "valid" in r]


_running = {"slow": False}  # whether the test being set up or run is marked slow


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runs before any fixture of the test, module-scoped ones included (they may train too)."""
    _running["slow"] = item.get_closest_marker("slow") is not None


def wukong_train(data: str, folder: Path | str, *args: str, env: dict | None = None, timeout: int = 300) -> Run:
    """``wukong train`` in a subprocess (the real CLI, torchrun included when --nproc is given).

    ``folder`` is the output: a local path (``Run`` helpers read it) or any URI. Only a test marked
    ``slow`` may train (``make test-fast`` must stay fast): anything else fails here."""
    if not _running["slow"]:
        pytest.fail("this test trains a model: mark it @pytest.mark.slow", pytrace=False)
    command = [sys.executable, "-m", "wukong", "train", "--data", data, "--output", str(folder), *FAST, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Run(result.returncode, result.stdout + result.stderr, Path(folder) if isinstance(folder, Path) else folder)
