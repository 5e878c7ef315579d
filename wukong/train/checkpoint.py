"""Checkpoints with ``torch.distributed.checkpoint``: sharded, resharding on load, complete or absent.

A checkpoint is the folder ``checkpoints/step-NNNNNNNNN/`` under the run's output: DCP's files (every
rank writes its shards, rank 0 the ``.metadata``), one ``rng-rank<r>.pt`` per rank, and last
``wukong.json`` (step, data position, best score...). Only a folder with ``wukong.json`` counts, and
a complete checkpoint is never rewritten: saving a step that is already complete keeps it (training
is deterministic, so it holds the same state), and pruning deletes a checkpoint's marker before its
shards. On ``s3://`` outputs every rank stages its files in a local folder and uploads them; loading
downloads the folder first. Rank 0 alone lists the storage and tells the others what it found, so
ranks agree even on eventually consistent object stores.

DCP reshards on load, so a checkpoint written by W ranks under one plan loads into any other world
size or plan: the model's weights always (sharded, replicated or whole). Optimizer state loads where
a parameter keeps its optimizer; a table that changes between replicated (a dense parameter: its
Adam state is saved under ``optim.state.dense.…``) and sharded (the fused optimizer's state, under
``optim.state.sparse.…``) has no saved state of its new kind, so that state starts afresh, and
:meth:`Checkpointer.load` returns which keys did.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner

from wukong.data.errors import DataError
from wukong.io import open_storage
from wukong.io.local import LocalStorage
from wukong.train.distributed import DistEnv, broadcast_object

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
        """The newest complete checkpoint as rank 0 lists it, on every rank (call it on every rank)."""
        steps = self.complete_steps() if self.env.is_main else []
        return broadcast_object(steps[-1] if steps else None)

    def save(self, step: int, state: dict[str, Any], info: dict[str, Any], protect: set[int] = frozenset()) -> bool:
        """Write ``state`` (model and optimizer state dicts) as step ``step``; ``info`` goes into the marker.

        Returns False, writing nothing, when step ``step`` is complete already."""
        complete = self.env.is_main and self.storage.exists(f"{step_dir(step)}/{MARKER}")
        if broadcast_object(complete):
            return False
        folder = self._local_dir(step)
        if self.env.is_main and folder.exists():
            shutil.rmtree(folder)  # a leftover of an interrupted save of the same step (no marker)
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
            self._write_marker(step, info)
            self._prune(protect | {step})
        dist.barrier()
        return True

    def update_info(self, step: int, info: dict[str, Any]) -> None:
        """Replace the marker of the complete checkpoint ``step`` (one atomic write; its shards stay)."""
        if self.env.is_main:
            self._write_marker(step, info)
        dist.barrier()

    def _write_marker(self, step: int, info: dict[str, Any]) -> None:
        marker = {**info, "step": step, "world_size": self.env.world_size}
        self.storage.write_bytes(f"{step_dir(step)}/{MARKER}", json.dumps(marker, indent=1).encode())

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
        # Markers first: a checkpoint interrupted while being deleted is then incomplete, never a
        # marker without its shards that every restart would pick and fail to load.
        self.storage.delete([key for key in doomed if key.endswith("/" + MARKER)])
        self.storage.delete([key for key in doomed if not key.endswith("/" + MARKER)])
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

    def load(
        self, step: int, state: dict[str, Any], rng: bool = True, optional: tuple[str, ...] = ("optim.",)
    ) -> tuple[dict[str, Any], list[str]]:
        """Load step ``step`` into ``state`` in place (resharding as needed), and this rank's RNG state
        saved with it unless ``rng`` is false.

        Returns its marker, and the keys of ``state`` it holds no value for, which must start with one
        of the ``optional`` prefixes (e.g. optimizer state of a parameter saved under another
        optimizer): those keep the values ``state`` has.

        Raises:
            DataError: the checkpoint lacks model weights (it is of another model or configuration).
        """
        folder = self.fetch(step)
        saved = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
        missing = [key for key in flat_keys(state) if key not in saved]
        weights = [key for key in missing if not key.startswith(optional)]
        if weights:
            raise DataError(
                f"{self.storage.uri(step_dir(step))}: the checkpoint has no {weights[0]} ({len(weights)} model "
                "weights missing): it was written by another model or configuration; resume with that, "
                "or give a new --output"
            )
        dcp.load(state, checkpoint_id=str(folder), planner=DefaultLoadPlanner(allow_partial_load=bool(missing)))
        rng_file = folder / f"rng-rank{self.env.rank}.pt"
        if rng and rng_file.exists():
            torch.set_rng_state(torch.load(rng_file, weights_only=True))
        return self.info(step), missing

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def flat_keys(state: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The keys DCP stores a nested state dict under (``optim.state.dense.x.exp_avg``)."""
    keys = []
    for key, value in state.items():
        name = f"{prefix}{key}"
        keys += flat_keys(value, name + ".") if isinstance(value, Mapping) else [name]
    return keys


def parameters_of(keys: list[str]) -> str:
    """State-dict keys as the parameters they belong to: embedding tables by name, others as they are."""
    names = sorted({m.group(1) if (m := re.search(r"embedding_bags\.(\w+)\.weight", k)) else k for k in keys})
    return ", ".join(names)
