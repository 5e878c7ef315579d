"""What a training run leaves under ``--output``: model.pt, model_card.json, metrics.json, history.jsonl."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp

from wukong.config import Config
from wukong.data.errors import DataError
from wukong.io import Storage
from wukong.model import RankingModel, build_model
from wukong.schema import FeatureSchema

MODEL = "model.pt"
CARD = "model_card.json"
METRICS = "metrics.json"
HISTORY = "history.jsonl"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("wukong-rec", "torch", "torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu", "torchmetrics"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def git_revision() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def manifest_sha256(storage: Storage) -> str:
    return hashlib.sha256(storage.read_bytes("manifest.json")).hexdigest()


def export_model(checkpoint_dir: Path, name: str, schema: FeatureSchema, cfg: Config) -> dict[str, torch.Tensor]:
    """The unsharded state dict of a checkpoint's model, read on one process (DCP reshards to one)."""
    from wukong.train.module import TrainModule

    module = TrainModule(build_model(name, schema, cfg.model))
    state = {"model": module.state_dict()}
    dcp.load(state, checkpoint_id=str(checkpoint_dir), no_dist=True)
    prefix = "model."
    return {k[len(prefix) :]: v.detach().clone() for k, v in state["model"].items()}


def save_model(storage: Storage, state_dict: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    storage.write_bytes(MODEL, buffer.getvalue())


def write_json(storage: Storage, key: str, data: Any) -> None:
    storage.write_bytes(key, (json.dumps(data, indent=1, default=str) + "\n").encode())


def load_trained_model(model_uri: str) -> tuple[RankingModel, dict[str, Any]]:
    """The model of a training output folder (model.pt + model_card.json), and its card."""
    from wukong.config import config_from_dict
    from wukong.io import open_storage

    storage = open_storage(model_uri)
    if not storage.exists(CARD) or not storage.exists(MODEL):
        raise DataError(f"{model_uri}: no {MODEL} and {CARD}; give the --output folder of a finished `wukong train`")
    card = json.loads(storage.read_bytes(CARD))
    cfg = config_from_dict(card["config"], f"{model_uri}/{CARD}")
    schema = FeatureSchema.from_dict(card["schema"])
    model = build_model(card["model"], schema, cfg.model)
    state = torch.load(io.BytesIO(storage.read_bytes(MODEL)), weights_only=True)
    model.load_state_dict(state)
    return model, card


def check_features(expected: FeatureSchema, actual: FeatureSchema, where: str) -> None:
    """One line naming the first feature a dataset has and a model was not trained on, or the reverse."""
    if expected.dense != actual.dense:
        raise DataError(f"{where}: dense features {list(actual.dense)} differ from the model's {list(expected.dense)}")
    if set(expected.sparse_names) != set(actual.sparse_names):
        raise DataError(
            f"{where}: sparse features {sorted(actual.sparse_names)} differ from the model's "
            f"{sorted(expected.sparse_names)}"
        )


def check_schema(expected: FeatureSchema, actual: FeatureSchema, where: str) -> None:
    """One line naming the first difference between the schema a model was trained on and a dataset's."""
    check_features(expected, actual, where)
    trained = {f.name: f for f in expected.sparse}
    given = {f.name: f for f in actual.sparse}
    for name, feature in trained.items():
        if given[name] != feature:
            raise DataError(
                f"{where}: feature {name!r} has cardinality {given[name].cardinality} "
                f"(multi-hot {given[name].multi_hot}), the model expects {feature.cardinality} ({feature.multi_hot}); "
                "evaluate on a dataset prepared with the model's vocabulary"
            )
