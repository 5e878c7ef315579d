"""``wukong train --init-from``: a new run that starts from a trained model instead of from scratch.

It is not a resume: the step counter, the data position, the learning-rate warm-up, early stopping
and the output folder are this run's own. What carries over from the source model (a training
output or a registered version):

- **weights**, from its ``model.pt``, into whatever sharding plan and world size this run has: each
  rank copies the rows and columns of its own shards (replicated parameters whole);
- **embedding rows by raw value**: row ``i`` of feature f's new table gets the source's row of the
  value that has id ``i`` now (:func:`wukong.data.vocabulary.id_map`, through the model's own copy of
  its vocabulary and the dataset's). With a dataset prepared with ``--extend-vocabulary`` that is
  the same id, and the table has only grown. Rows of values the source never saw keep this run's
  initialisation;
- **optimizer state**, from the checkpoint ``model.pt`` was exported from, where the source still has
  it (a training output, or the training output a registered version came from, if its model file is
  the same): Adam's moments of dense parameters and replicated tables, the fused optimizer's per-row
  state of sharded tables, mapped by value like the rows. State whose layout differs (a table now
  replicated that was sharded, a column-wise layout) starts afresh, and the log says which.

The source must be the same model: same family, same features, same parameter shapes apart from the
tables' rows (so the same ``embedding_dim`` and architecture); anything else is a one-line
:class:`~wukong.data.errors.DataError` naming the first difference.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp

from wukong.config import Config
from wukong.data.errors import DataError
from wukong.data.vocabulary import dataset_vocabulary, id_map, read_vocabulary
from wukong.io import open_storage
from wukong.io.local import LocalStorage
from wukong.model import build_model
from wukong.model.inference import table_name
from wukong.schema import FeatureSchema
from wukong.train.checkpoint import MARKER, Checkpointer, step_dir
from wukong.train.distributed import DistEnv
from wukong.train.outputs import CARD, MODEL

TABLE = re.compile(r"embedding_bags\.(\w+?)\.weight")
RECORD = "init_from.json"  # the warm start a run began with, in its output (the card repeats it)
VERSION_RECORD = "version.json"  # an embedded registry version's record (its training output, model digest)


@dataclass
class Source:
    """A trained model to start from: its folder (``model.pt``, ``model_card.json``), and where the
    checkpoint that holds its optimizer state is (a training output and a step), if anywhere."""

    folder: str
    card: dict[str, Any]
    checkpoint: tuple[str, int] | None = None

    @classmethod
    def open(cls, folder: str) -> Source:
        storage = open_storage(folder)
        if not (storage.exists(MODEL) and storage.exists(CARD)):
            raise DataError(
                f"--init-from {folder}: no {MODEL} and {CARD}; give a finished `wukong train` --output or a "
                "registry version (production, NAME:VERSION)"
            )
        card = json.loads(storage.read_bytes(CARD))
        return cls(folder, card, _checkpoint_of(folder, card))

    @property
    def schema(self) -> FeatureSchema:
        return FeatureSchema.from_dict(self.card["schema"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        storage = open_storage(self.folder)
        if isinstance(storage, LocalStorage):  # memory-mapped: pages are read as shards need them
            return torch.load(storage.root / MODEL, weights_only=True, mmap=True)
        return torch.load(io.BytesIO(storage.read_bytes(MODEL)), weights_only=True)


def _checkpoint_of(folder: str, card: dict[str, Any]) -> tuple[str, int] | None:
    """The training output and step whose checkpoint ``folder``'s model.pt was exported from: the folder
    itself (a training output), or the training output of a registered version, while it holds the
    same model file and that checkpoint."""
    step = card.get("best_step") if card.get("best_step") is not None else card.get("steps")
    if step is None:
        return None
    candidates = [folder]
    storage = open_storage(folder)
    if storage.exists(VERSION_RECORD):
        record = json.loads(storage.read_bytes(VERSION_RECORD))
        origin = (record.get("lineage") or {}).get("training_output")
        if origin and _model_digest(origin) == record.get("model_sha256"):
            candidates.append(origin)
    for candidate in candidates:
        if open_storage(candidate).exists(f"{step_dir(step)}/{MARKER}"):
            return candidate, int(step)
    return None


def _model_digest(folder: str) -> str | None:
    """The sha256 of ``folder``'s model.pt (None when it has none)."""
    storage = open_storage(folder)
    return hashlib.sha256(storage.read_bytes(MODEL)).hexdigest() if storage.exists(MODEL) else None


@dataclass
class WarmStart:
    """A checked warm start: the source, and for every table of this run the source row of each row
    (``-1``: a value the source never saw)."""

    source: Source
    label: str  # how the log and the card name the source (``wukong-ctr version 3 (path)``)
    rows: dict[str, np.ndarray]  # table name -> (rows,) source row per row
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plan(cls, folder: str, cfg: Config, data_uri: str, schema: FeatureSchema, label: str | None = None):
        """Check that the model at ``folder`` can start this run and map its rows (one line on failure).

        Raises:
            DataError: another model family, other features, other parameter shapes, no vocabulary to
                map the rows by, or an encoding the data does not share.
        """
        source = Source.open(folder)
        label = label or folder
        _check_compatible(source, cfg, schema, label)
        old_vocabulary, new_vocabulary = read_vocabulary(folder), dataset_vocabulary(data_uri)
        rows = {}
        for feature in schema.sparse:
            mapped = id_map(old_vocabulary, new_vocabulary, feature.name)
            old_rows = next(f.cardinality for f in source.schema.sparse if f.name == feature.name)
            if len(mapped) != feature.cardinality or mapped.max(initial=0) >= old_rows:
                raise DataError(
                    f"--init-from {label}: the vocabulary of {feature.name!r} does not match its table "
                    f"({old_rows} rows); the model folder is inconsistent"
                )
            rows[table_name(feature.name)] = mapped
        return cls(source, label, rows)

    # ---- loading ---------------------------------------------------------------------------------
    def load(self, model: torch.nn.Module, optimizer, env: DistEnv) -> dict[str, Any]:
        """Copy the source's weights (and optimizer state where it fits) into the sharded ``model`` and
        its ``optimizer`` on this rank; returns what was copied (the same on every rank)."""
        saved = self.source.state_dict()
        state = model.state_dict()
        for key, value in state.items():
            _copy(value, saved[key.removeprefix("model.")], self._rows_of(key))
        model.load_state_dict(state)
        del saved
        tables = {}
        for table, mapped in self.rows.items():
            known = int((mapped[1:] >= 0).sum())
            tables[table] = {"rows": len(mapped), "copied": known + 1, "new": len(mapped) - 1 - known}  # + unseen
        self.report = {
            "from": self.label,
            "folder": self.source.folder,
            "model": self.source.card.get("model"),
            "dataset": self.source.card.get("dataset", {}),
            "tables": tables,
            "optimizer_state": self._load_optimizer(optimizer, env),
        }
        return self.report

    def _rows_of(self, key: str) -> np.ndarray | None:
        match = TABLE.search(key)
        return self.rows[match.group(1)] if match else None

    def _load_optimizer(self, optimizer, env: DistEnv) -> dict[str, Any]:
        if self.source.checkpoint is None:
            return {"loaded": 0, "fresh": "all", "why": "the source keeps no checkpoint (only model.pt)"}
        uri, step = self.source.checkpoint
        checkpointer = Checkpointer(uri, env, keep=0)
        try:
            folder = checkpointer.fetch(step)
            saved = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
            optimizer.init_state()  # state must exist before it can be filled
            state = optimizer.state_dict()
            loaded, fresh = 0, []
            for key, value in _tensors(state["state"], "state."):
                target = saved.get(f"optim.{key}")
                rows = self._rows_of(key)
                if target is None or not _fits(target.size, _shape(value), rows):
                    fresh.append(key)
                    continue
                _copy(value, _read(folder, f"optim.{key}", target), rows)
                loaded += 1
            optimizer.load_state_dict(state)
        finally:
            checkpointer.close()
        return {"loaded": loaded, "fresh": len(fresh), "checkpoint": f"{uri.rstrip('/')}/{step_dir(step)}"}


def _check_compatible(source: Source, cfg: Config, schema: FeatureSchema, label: str) -> None:
    old, family = source.schema, source.card.get("model")
    if family != cfg.model.name:
        raise DataError(
            f"--init-from {label}: a {family} model, this run trains {cfg.model.name}; pass --model {family}, "
            "or train from scratch without --init-from"
        )
    if old.dense != schema.dense or set(old.sparse_names) != set(schema.sparse_names):
        raise DataError(
            f"--init-from {label}: trained on features {list(old.dense) + old.sparse_names}, the data has "
            f"{list(schema.dense) + schema.sparse_names}; a warm start needs the same features"
        )
    old_dim = source.card.get("config", {}).get("model", {}).get("embedding_dim")
    if old_dim != cfg.model.embedding_dim:
        raise DataError(
            f"--init-from {label}: embedding_dim {old_dim}, this run {cfg.model.embedding_dim}; pass "
            f"--set model.embedding_dim={old_dim}, or train from scratch without --init-from"
        )
    expected = build_model(cfg.model.name, schema, cfg.model, device="meta").state_dict()
    saved = source.state_dict()
    for key, value in expected.items():
        if key not in saved:
            raise DataError(f"--init-from {label}: has no parameter {key}; the model configuration differs")
        here, there = tuple(value.shape), tuple(saved[key].shape)
        if TABLE.search(key):
            here, there = here[1:], there[1:]
        if here != there:
            raise DataError(
                f"--init-from {label}: parameter {key} is {_dims(there)} there, {_dims(here)} here; the model "
                "configuration differs (compare its model_card.json config.model with this run's)"
            )
    extra = sorted(set(saved) - set(expected))
    if extra:
        raise DataError(f"--init-from {label}: has parameter {extra[0]} this model lacks; the configuration differs")


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def _tensors(state: dict[str, Any], prefix: str):
    """(flat key, tensor) of a nested optimizer state dict, as DCP names them."""
    for key, value in state.items():
        if isinstance(value, dict):
            yield from _tensors(value, f"{prefix}{key}.")
        elif isinstance(value, torch.Tensor):
            yield f"{prefix}{key}", value


def _shape(value: torch.Tensor) -> tuple[int, ...]:
    return tuple(value.size())  # ShardedTensor.size() is the global shape


def _fits(saved: torch.Size, shape: tuple[int, ...], rows: np.ndarray | None) -> bool:
    """Whether a saved tensor of shape ``saved`` fills one of ``shape`` (through ``rows`` for a table's)."""
    if rows is None or not shape:
        return tuple(saved) == shape
    return len(saved) == len(shape) and shape[0] == len(rows) and tuple(saved[1:]) == shape[1:]


def _read(folder: Path, key: str, meta) -> torch.Tensor:
    """One saved tensor, whole, from a DCP checkpoint folder (on this process alone)."""
    out = {key: torch.empty(meta.size, dtype=meta.properties.dtype)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(out, checkpoint_id=str(folder), no_dist=True)
    return out[key]


def _local_parts(value) -> list[tuple[torch.Tensor, list[int]]]:
    """The parts of ``value`` this rank holds, with their offsets in the whole tensor."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor
    from torch.distributed.tensor import DTensor

    if isinstance(value, ShardedTensor):
        return [(shard.tensor, list(shard.metadata.shard_offsets)) for shard in value.local_shards()]
    if isinstance(value, DTensor):
        raise DataError("--init-from: a DTensor-sharded parameter; use another train.sharding for the warm start")
    return [(value, [0] * value.dim())]


@torch.no_grad()
def _copy(target, saved: torch.Tensor, rows: np.ndarray | None) -> None:
    """Fill this rank's part of ``target`` from the whole ``saved`` tensor: row ``r`` from saved row
    ``rows[r]`` (kept where that is -1), or the same rows when ``rows`` is None."""
    for local, offsets in _local_parts(target):
        if local.dim() == 0:
            local.copy_(saved)
            continue
        start, count = offsets[0], local.shape[0]
        source_rows = rows[start : start + count] if rows is not None else np.arange(start, start + count)
        known = source_rows >= 0
        if not known.any():
            continue
        columns = tuple(slice(o, o + n) for o, n in zip(offsets[1:], local.shape[1:]))
        values = saved[torch.from_numpy(source_rows[known])][(slice(None), *columns)]
        local[torch.from_numpy(known).to(local.device)] = values.to(local.device, local.dtype)


def describe(report: dict[str, Any]) -> str:
    """The warm start in one log line."""
    tables = report["tables"].values()
    rows, copied = sum(t["rows"] for t in tables), sum(t["copied"] for t in tables)
    optimizer = report["optimizer_state"]
    state = (
        f"optimizer state of {optimizer['loaded']} tensors loaded, {optimizer['fresh']} afresh"
        if optimizer.get("loaded")
        else f"optimizer state afresh ({optimizer.get('why', 'none fits')})"
    )
    return (
        f"warm start from {report['from']}: every weight; {copied:,} of {rows:,} embedding rows from the model, "
        f"{rows - copied:,} new values initialised; {state}"
    )


def recorded(storage) -> dict[str, Any] | None:
    """The warm start a run's output records (None: it started from scratch)."""
    return json.loads(storage.read_bytes(RECORD)) if storage.exists(RECORD) else None
