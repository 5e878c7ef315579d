"""Vocabularies across datasets and models: ids that keep their meaning from one day's data to the next.

A frequency vocabulary gives the known values of a sparse feature the ids ``1..V`` (0: unseen); row
``i`` of the feature's embedding table belongs to the value with id ``i``. Daily retraining needs
those rows to stay meaningful when a new dataset is prepared:

- :func:`extend` (``wukong data prepare --extend-vocabulary FROM``): the values of FROM keep their ids,
  the values new in this data get the ids after them, in descending frequency (ties by value). The
  table only grows: ``V_new = V_old + new values`` (capped at ``--max-vocab``, old ids always kept);
- :func:`id_map` maps the ids of one vocabulary onto another's **by raw value**: a warm start copies
  the row a model learned for each value into the new table; evaluating a model on data with a newer
  vocabulary reads a value the model never saw as its unseen id 0.

Hash encoding needs neither: a value hashes to the same id whenever the table size is the same.

Where a vocabulary is read from (:func:`read_vocabulary`): a dataset (its ``manifest.json`` names the
vocabulary file), or a model folder (a training output or a registered version), which keeps its own
copy: ``preprocessing.json`` and ``vocabulary.parquet`` (:func:`write_copy`). A model trained before
models kept a copy falls back to its training dataset, if that still holds the same run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wukong.data.errors import DataError
from wukong.data.lookup import ABSENT, ValueIndex
from wukong.data.manifest import MANIFEST, read_manifest
from wukong.data.preprocess import FrequencyVocabulary
from wukong.io import Storage, open_storage

PREPROCESSING = "preprocessing.json"  # a model folder's copy of its dataset's preprocessing
VOCABULARY = "vocabulary.parquet"  # and of its vocabulary (frequency encoding)
CARD = "model_card.json"  # a training output's card (names the training dataset)


@dataclass
class Vocabulary:
    """The categorical encoding of a dataset or model: ``frequency`` (``values[f]``: feature f's values as
    text, in id order ``1..V``) or ``hash`` (``hash_size`` ids per feature)."""

    mode: str
    where: str
    features: tuple[str, ...]
    values: dict[str, pa.Array] = field(default_factory=dict)
    hash_size: int | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def size(self, feature: str) -> int:
        """The feature's table rows: ``V + 1`` (frequency) or the hash size."""
        if self.mode == "hash":
            return int(self.hash_size)
        return len(self.values.get(feature, ())) + 1

    @classmethod
    def from_parts(
        cls, preprocessing: dict[str, Any], table: pa.Table | None, features: Sequence[str], where: str
    ) -> Vocabulary:
        categorical = preprocessing.get("categorical") or {}
        mode = categorical.get("mode", "frequency")
        features = tuple(features)
        if mode == "hash":
            return cls("hash", where, features, hash_size=int(categorical["size"]), preprocessing=preprocessing)
        if mode != "frequency":
            raise DataError(f"{where}: unknown categorical encoding {mode!r}; re-prepare it with this version")
        values = {}
        if table is not None:
            for name in pc.unique(table.column("feature")).to_pylist():
                rows = table.filter(pc.equal(table.column("feature"), name)).sort_by("id")
                values[name] = pc.cast(rows.column("value"), pa.string()).combine_chunks()
        return cls("frequency", where, features, values, preprocessing=preprocessing)


def _parquet(storage: Storage, key: str | None) -> pa.Table | None:
    return pq.read_table(io.BytesIO(storage.read_bytes(key))) if key else None


def dataset_vocabulary(uri: str) -> Vocabulary:
    """The vocabulary of the dataset at ``uri``."""
    storage = open_storage(uri)
    manifest = read_manifest(storage)
    table = _parquet(storage, manifest.files.get("vocabulary"))
    return Vocabulary.from_parts(manifest.preprocessing, table, manifest.schema.sparse_names, uri)


def read_vocabulary(uri: str) -> Vocabulary:
    """The vocabulary of a dataset or a model folder at ``uri`` (see the module's text).

    Raises:
        DataError: ``uri`` is neither, or a model whose vocabulary is gone (its dataset was prepared again).
    """
    storage = open_storage(uri)
    if storage.exists(MANIFEST):
        return dataset_vocabulary(uri)
    if storage.exists(PREPROCESSING):
        preprocessing = json.loads(storage.read_bytes(PREPROCESSING))
        table = _parquet(storage, VOCABULARY if storage.exists(VOCABULARY) else None)
        return Vocabulary.from_parts(preprocessing, table, preprocessing.get("sparse_features", ()), uri)
    if not storage.exists(CARD):
        raise DataError(
            f"{uri}: neither a dataset ({MANIFEST}) nor a trained model ({CARD}); give a `wukong data prepare` "
            "--output, a `wukong train` --output or a registry version"
        )
    dataset = json.loads(storage.read_bytes(CARD)).get("dataset") or {}
    source = dataset.get("uri")
    try:
        manifest = read_manifest(open_storage(source)) if source else None
    except DataError:
        manifest = None
    if manifest is None or manifest.run_id != dataset.get("run_id"):
        raise DataError(
            f"{uri}: the model keeps no copy of its vocabulary (trained before models did) and its dataset "
            f"{source} no longer holds run {dataset.get('run_id')}; retrain it, or start without it"
        )
    return dataset_vocabulary(source)


def write_copy(dataset: Storage, target: Storage) -> None:
    """Copy a dataset's preprocessing and vocabulary file into a model folder (``preprocessing.json``
    and ``vocabulary.parquet``): the model then needs the dataset no longer to be served or extended."""
    manifest = read_manifest(dataset)
    key = manifest.files.get("vocabulary")
    if key:
        target.write_bytes(VOCABULARY, dataset.read_bytes(key))
    preprocessing = {
        **manifest.preprocessing,
        "sparse_features": list(manifest.schema.sparse_names),
        "run_id": manifest.run_id,
        "partition": manifest.partition,
    }
    target.write_bytes(PREPROCESSING, (json.dumps(preprocessing, indent=1) + "\n").encode())


def check_same_encoding(old: Vocabulary, new: Vocabulary) -> None:
    """Raises a one-line :class:`DataError` when ids of ``new`` cannot mean the values of ``old``."""
    if old.mode != new.mode:
        raise DataError(
            f"{new.where} encodes categories by {new.mode}, {old.where} by {old.mode}; prepare the data with "
            f"--categorical {old.mode}"
        )
    if old.mode == "hash" and old.hash_size != new.hash_size:
        raise DataError(
            f"{new.where} hashes into {new.hash_size} ids, {old.where} into {old.hash_size}; prepare the data with "
            f"--hash-size {old.hash_size}"
        )


def id_map(old: Vocabulary, new: Vocabulary, feature: str) -> np.ndarray:
    """For every id ``0..size-1`` of ``feature`` in ``new``, the id of the same raw value in ``old``, or
    -1 where ``old`` never saw the value. The unseen id 0 maps to 0; hash ids map to themselves."""
    check_same_encoding(old, new)
    if new.mode == "hash":
        return np.arange(new.size(feature), dtype=np.int64)
    known = old.values.get(feature, pa.array([], pa.string()))
    values = new.values.get(feature, pa.array([], pa.string()))
    positions = ValueIndex(known).positions(values)
    return np.concatenate([[0], np.where(positions == ABSENT, -1, positions + 1)]).astype(np.int64)


@dataclass
class Extension:
    """What :func:`extend` did to one feature: ids kept from the base, values added after them."""

    kept: int
    added: int

    def to_dict(self) -> dict[str, int]:
        return {"kept": self.kept, "added": self.added}


def extend(
    base: pa.Array, fitted: pa.Array, counts: np.ndarray, max_size: int | None
) -> tuple[pa.Array, np.ndarray, Extension]:
    """The base vocabulary (text, in id order) followed by the ``fitted`` values it lacks, in their fitted
    (frequency) order; at most ``max_size`` values unless the base alone holds more (its ids are kept).

    Returns the values as text, their counts in this data (0 for base values it lacks), and what changed.
    """
    text = pc.cast(fitted, pa.string()) if len(fitted) else pa.array([], pa.string())
    in_base = ValueIndex(base).positions(text) if len(text) else np.zeros(0, np.int64)
    new = np.flatnonzero(in_base == ABSENT)
    if max_size is not None:
        new = new[: max(max_size - len(base), 0)]
    values = pa.concat_arrays([base.cast(pa.string()), text.take(pa.array(new, pa.int64()))])
    base_counts = np.zeros(len(base), np.int64)
    found = in_base != ABSENT
    base_counts[in_base[found]] = np.asarray(counts)[found]
    return values, np.concatenate([base_counts, np.asarray(counts)[new]]), Extension(len(base), len(new))


def check_base(base: Vocabulary, features: Sequence[str], categorical: str, hash_size: int) -> None:
    """Raises a one-line :class:`DataError` unless data with sparse ``features``, encoded by ``categorical``
    (``hash_size`` ids when hashing), can extend the vocabulary ``base``."""
    if set(base.features) != set(features):
        raise DataError(
            f"--extend-vocabulary {base.where}: its sparse features {sorted(base.features)} differ from this "
            f"source's {sorted(features)}; extend a vocabulary of the same features"
        )
    if base.mode != categorical:
        raise DataError(
            f"--extend-vocabulary {base.where} encodes categories by {base.mode}: pass --categorical {base.mode}"
        )
    if base.mode == "hash" and base.hash_size != hash_size:
        raise DataError(
            f"--extend-vocabulary {base.where} hashes into {base.hash_size} ids: pass --hash-size {base.hash_size}"
        )


def extend_encoder(encoder: FrequencyVocabulary, base: Vocabulary, feature: str) -> Extension:
    """Make the finished ``encoder``'s vocabulary ``base``'s for ``feature``, extended by :func:`extend`."""
    known = base.values.get(feature, pa.array([], pa.string()))
    encoder.values, encoder.counts, change = extend(known, encoder.values, encoder.counts, encoder.max_size)
    encoder.reset_index()
    return change


def base_vocabulary(uri: str | None, features: Sequence[str], categorical: str, hash_size: int) -> Vocabulary | None:
    """The vocabulary at ``uri`` to extend (None without one), checked by :func:`check_base`."""
    if not uri:
        return None
    base = read_vocabulary(uri)
    check_base(base, features, categorical, hash_size)
    return base
