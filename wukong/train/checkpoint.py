"""Checkpoints with ``torch.distributed.checkpoint``: sharded, resharding on load, complete or absent.

A checkpoint is the folder ``checkpoints/step-NNNNNNNNN/`` under the run's output: DCP's files (every
rank writes its shards, rank 0 the ``.metadata``), one ``rng-rank<r>.pt`` per rank, and last
``wukong.json`` (step, data position, best score...). Only a folder with ``wukong.json`` counts. On
``s3://`` outputs every rank stages its files in a local folder and uploads them; loading downloads
the folder first. DCP reshards on load, so a checkpoint written by W ranks under one plan loads into
any other world size or plan.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from wukong.io import open_storage
from wukong.io.local import LocalStorage
from wukong.train.distributed import DistEnv

PREFIX = "checkpoints"
MARKER = "wukong.json"
STEP_DIR = re.compile(r"^checkpoints/step-(\d+)/" + re.escape(MARKER) + "$")


def step_dir(step: int) -> str:
    return f"{PREFIX}/step-{step:09d}"


class Checkpointer:
    def __init__(self, output_uri: str, env: DistEnv, keep: int) -> None:
        self.storage = open_storage(output_uri)
        self.env, self.keep = env, keep
        self.local = isinstance(self.storage, LocalStorage)
        self.staging = Path(tempfile.mkdtemp(prefix=f"wukong-ckpt-r{env.rank}-"))

    def _local_dir(self, step: int) -> Path:
        if self.local:
            return self.storage.root / step_dir(step)
        return self.staging / step_dir(step)

    def complete_steps(self) -> list[int]:
        return sorted(int(m.group(1)) for o in self.storage.list(PREFIX + "/") if (m := STEP_DIR.match(o.key)))

    def latest(self) -> int | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: dict[str, Any], info: dict[str, Any], protect: set[int] = frozenset()) -> None:
        """Write ``state`` (model and optimizer state dicts) as step ``step``; ``info`` goes into the marker."""
        folder = self._local_dir(step)
        if self.env.is_main and folder.exists():
            shutil.rmtree(folder)  # a leftover of an interrupted save of the same step
        dist.barrier()
        folder.mkdir(parents=True, exist_ok=True)
        dcp.save(state, checkpoint_id=str(folder))
        torch.save(torch.get_rng_state(), folder / f"rng-rank{self.env.rank}.pt")
        if not self.local:
            written = [
                p
                for p in folder.iterdir()
                if p.name.startswith(f"__{self.env.rank}_") or p.name == f"rng-rank{self.env.rank}.pt"
            ]
            if self.env.is_main:
                written.append(folder / ".metadata")
            for path in written:
                self.storage.upload_file(path, f"{step_dir(step)}/{path.name}")
        dist.barrier()
        if self.env.is_main:
            marker = {**info, "step": step, "world_size": self.env.world_size}
            self.storage.write_bytes(f"{step_dir(step)}/{MARKER}", json.dumps(marker, indent=1).encode())
            self._prune(protect | {step})
        dist.barrier()

    def _prune(self, protect: set[int]) -> None:
        complete = self.complete_steps()
        keep = set(complete[-self.keep :]) | protect
        newest = complete[-1] if complete else -1
        doomed = []
        for obj in self.storage.list(PREFIX + "/"):
            match = re.match(r"^checkpoints/step-(\d+)/", obj.key)
            if match:
                step = int(match.group(1))
                # Old complete checkpoints beyond `keep`, and unfinished ones older than the newest.
                if step not in keep and (step in complete or step < newest):
                    doomed.append(obj.key)
        self.storage.delete(doomed)
        if self.local:
            for folder in (self.storage.root / PREFIX).glob("step-*"):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

    def fetch(self, step: int) -> Path:
        """A local folder holding the complete checkpoint ``step`` (downloaded from object storage if needed)."""
        folder = self._local_dir(step)
        if not self.local:
            folder.mkdir(parents=True, exist_ok=True)
            for obj in self.storage.list(step_dir(step) + "/"):
                target = folder / obj.key.rsplit("/", 1)[1]
                if not target.exists():
                    target.write_bytes(self.storage.read_bytes(obj.key))
        return folder

    def info(self, step: int) -> dict[str, Any]:
        return json.loads(self.storage.read_bytes(f"{step_dir(step)}/{MARKER}"))

    def load(self, step: int, state: dict[str, Any]) -> dict[str, Any]:
        """Load step ``step`` into ``state`` in place (resharding as needed); returns its marker."""
        folder = self.fetch(step)
        dcp.load(state, checkpoint_id=str(folder))
        rng = folder / f"rng-rank{self.env.rank}.pt"
        if rng.exists():
            torch.set_rng_state(torch.load(rng, weights_only=True))
        return self.info(step)

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
