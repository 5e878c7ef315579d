"""The serving artifact ``wukong export`` writes, and how it is read back.

An artifact is a folder (or ``s3://`` prefix), by default ``export/`` inside the model's folder::

    program-<sha12>.pt2         a torch.export ExportedProgram (torch.export.save) of InferenceModel
    vocabulary-<sha12>.parquet  feature, value, id: the training vocabularies (frequency encoding only)
    signature.json              written last: inputs, output, preprocessing, model, dataset, versions

The program is plain torch (:class:`~wukong.model.inference.InferenceModel`: embedding tables as
dense tensors, the interaction arch, a sigmoid): loading it needs torch alone, neither TorchRec nor
this package. Its inputs are the *prepared* tensors listed in the signature's ``tensors``; raw rows
become those tensors with the bundled vocabulary and the training preprocessing
(:mod:`wukong.serve.predict`, which reuses :mod:`wukong.data.encode`). File names carry their
content's hash and ``signature.json`` names them, so re-exporting into the same folder never shows a
reader a program with another model's signature: the old files go only after the new signature lands.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
from typing import Any

import torch

from wukong import __version__
from wukong.config import config_from_dict, config_to_dict
from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.data.vocabulary import PREPROCESSING, VOCABULARY
from wukong.io import Storage, StorageError, open_storage
from wukong.model.inference import InferenceModel
from wukong.schema import FeatureSchema
from wukong.train.outputs import CARD, MODEL, git_revision, package_versions

FORMAT = "wukong-export"
FORMAT_VERSION = 1
SIGNATURE = "signature.json"
EXPORT_DIR = "export"  # a model folder's artifact
TOLERANCE = 1e-5  # the exported program must reproduce the eager model to this (max |Δp|)


def _named(prefix: str, data: bytes, suffix: str) -> str:
    return f"{prefix}-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"


def _training_data(source: Storage, card: dict[str, Any], where: str) -> tuple[dict[str, Any], bytes | None]:
    """The preprocessing the model was trained with and its vocabulary file: the model folder's own copy
    (:func:`wukong.data.vocabulary.write_copy`), else the training dataset's.

    Raises:
        DataError: no copy, and the dataset is gone or was prepared again since (its vocabulary may differ).
    """
    if source.exists(PREPROCESSING):
        vocabulary = source.read_bytes(VOCABULARY) if source.exists(VOCABULARY) else None
        return json.loads(source.read_bytes(PREPROCESSING)), vocabulary
    dataset = card.get("dataset") or {}
    uri = dataset.get("uri")
    storage = open_storage(uri) if uri else None
    try:
        manifest = read_manifest(storage) if storage else None
    except (DataError, StorageError) as error:
        raise DataError(f"{where}: cannot read the training dataset's preprocessing ({error})") from None
    if manifest is None or manifest.run_id != dataset.get("run_id"):
        now = f"now holds run {manifest.run_id}" if manifest else "is unknown"
        raise DataError(
            f"{where}: the model was trained on dataset run {dataset.get('run_id')} at {uri}, which {now}: its "
            "vocabulary is gone; export right after training (the pipeline's register step does), or retrain"
        )
    vocabulary = manifest.files.get("vocabulary")
    return manifest.preprocessing, storage.read_bytes(vocabulary) if vocabulary else None


def build_program(model: InferenceModel) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) with a dynamic batch, checked against the eager model."""
    model.eval()
    example = model.example_inputs(batch=5)
    with torch.no_grad():
        program = torch.export.export(model, example, dynamic_shapes=model.dynamic_shapes())
        error = (program.module()(*example) - model(*example)).abs().max().item()
    if not error <= TOLERANCE:
        raise RuntimeError(f"the exported program differs from the model by {error:g} (> {TOLERANCE:g})")
    return program


def export_artifact(model_uri: str, output_uri: str | None = None) -> dict[str, Any]:
    """Export the training output (or registered version) at ``model_uri`` to ``output_uri`` (default
    ``<model_uri>/export``); returns the signature.

    Raises:
        DataError: ``model_uri`` holds no trained model, or its training dataset changed since.
    """
    source = open_storage(model_uri)
    if not (source.exists(MODEL) and source.exists(CARD)):
        raise DataError(f"{model_uri}: no {MODEL} and {CARD}; give a `wukong train` --output or a registry version")
    card = json.loads(source.read_bytes(CARD))
    preprocessing, vocabulary = _training_data(source, card, model_uri)
    cfg = config_from_dict(card["config"], f"{model_uri}/{CARD}")
    schema = FeatureSchema.from_dict(card["schema"])
    model_bytes = source.read_bytes(MODEL)
    model = InferenceModel(card["model"], schema, cfg.model)
    model.load_state_dict(torch.load(io.BytesIO(model_bytes), weights_only=True))  # strict: every weight used
    buffer = io.BytesIO()
    torch.export.save(build_program(model), buffer)
    program = buffer.getvalue()

    files = {"program": _named("program", program, ".pt2")}
    if vocabulary is not None:
        files["vocabulary"] = _named("vocabulary", vocabulary, ".parquet")
    types = preprocessing.get("value_types", {})
    signature = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": files,
        "inputs": {
            "dense": [{"name": name, "dtype": "float64"} for name in schema.dense],
            "sparse": [
                {"name": f.name, "dtype": types.get(f.name), "multi_hot": f.multi_hot, "cardinality": f.cardinality}
                for f in schema.sparse
            ],
        },
        "tensors": model.input_spec(),
        "output": {"name": "probability", "dtype": "float32", "shape": ["batch"], "meaning": "P(label = 1)"},
        "preprocessing": preprocessing,
        "schema": schema.to_dict(),
        "model": {
            "name": card["model"],
            "config": config_to_dict(cfg)["model"],
            "mflops_per_example": card.get("mflops_per_example"),
            "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
            "metrics": card.get("metrics", {}),
            "exported_from": model_uri,
        },
        "dataset": card.get("dataset", {}),
        "versions": {"exported_with": package_versions(), "trained_with": card.get("package_versions", {})},
        "git_revision": git_revision(),
        "tool_version": __version__,
    }
    target = open_storage(output_uri or source.uri(EXPORT_DIR))
    publish(target, signature, {files["program"]: program, **({files["vocabulary"]: vocabulary} if vocabulary else {})})
    return signature


def publish(storage: Storage, signature: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """Write the files, then the signature (the commit point), then the files only an earlier export used."""
    before = set()
    if storage.exists(SIGNATURE):
        with contextlib.suppress(DataError, ValueError, KeyError):  # an unreadable old export: keep its files
            before = set(read_signature(storage)["files"].values())
    for key, data in blobs.items():
        storage.write_bytes(key, data)
    storage.write_bytes(SIGNATURE, (json.dumps(signature, indent=1) + "\n").encode())
    storage.delete(sorted(before - set(blobs)))


def read_signature(storage: Storage) -> dict[str, Any]:
    """The artifact's signature, or a one-line error if ``storage`` holds no (finished) export."""
    if not storage.exists(SIGNATURE):
        raise DataError(f"{storage.uri()}: no {SIGNATURE}, so not an exported model; run `wukong export`")
    signature = json.loads(storage.read_bytes(SIGNATURE))
    if signature.get("format") != FORMAT or signature.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{storage.uri(SIGNATURE)}: not a {FORMAT} v{FORMAT_VERSION} signature; export again with this version"
        )
    return signature


def load_program(storage: Storage, signature: dict[str, Any], device: str = "cpu") -> torch.nn.Module:
    """The exported program as a callable module on ``device`` (``cuda`` moves its weights there)."""
    program = torch.export.load(io.BytesIO(storage.read_bytes(signature["files"]["program"])))
    if device != "cpu":
        program = torch.export.passes.move_to_device_pass(program, device)
    return program.module()
