"""Quality metrics of click-through predictions, and curves to plot them.

- ``auc``: area under the ROC curve (torchmetrics ``BinaryAUROC``, exact);
- ``logloss``: mean binary cross-entropy ``-mean(y log p + (1-y) log(1-p))``;
- ``ne``: normalized entropy, logloss divided by the entropy of the base rate
  ``p̄ = mean(y)``: ``H(p̄) = -(p̄ log p̄ + (1-p̄) log(1-p̄))``. Below 1 means better than predicting
  the base rate for everyone (the paper's and DLRM's headline metric);
- ``calibration``: mean prediction / mean label (1 is calibrated);
- ``rows``, ``positive_rate``;
- curves: ROC points (at most ``max_points``), a calibration curve (mean prediction vs mean label
  in equal-count bins of the prediction) and a confusion matrix.

On data whose true probabilities are known (the teacher source, :mod:`wukong.data.oracle`),
:func:`oracle_metrics` adds, on the same rows: ``oracle_logloss`` and ``oracle_auc`` (the Bayes
limit: no model can be expected to do better), ``oracle_expected_logloss`` (the mean entropy of
the true probabilities, which ``oracle_logloss`` matches up to sampling noise) and
``excess_logloss`` = model LogLoss − oracle LogLoss, the reducible part of the loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.classification import BinaryAUROC, BinaryROC

EPS = 1e-7


def compute_metrics(predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of probabilities ``predictions`` against ``labels`` in {0, 1} (both ``(N,)``)."""
    if predictions.numel() == 0:
        raise ValueError("no predictions to evaluate")
    p = predictions.double().clamp(EPS, 1 - EPS)
    y = labels.double()
    logloss = torch.nn.functional.binary_cross_entropy(p, y).item()
    base = y.mean().item()
    entropy = -(base * math.log(base) + (1 - base) * math.log(1 - base)) if 0 < base < 1 else float("nan")
    has_both = 0 < base < 1
    return {
        "auc": BinaryAUROC()(predictions.float(), labels.long()).item() if has_both else float("nan"),
        "logloss": logloss,
        "ne": logloss / entropy if has_both else float("nan"),
        "calibration": p.mean().item() / base if base > 0 else float("nan"),
        "rows": int(predictions.numel()),
        "positive_rate": base,
    }


def oracle_metrics(
    dataset_uri: str,
    split: str,
    row_ids: torch.Tensor | np.ndarray,
    probabilities: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
) -> dict[str, float]:
    """Oracle metrics of predictions for rows ``row_ids`` of ``split`` of the dataset at ``dataset_uri``
    (all ``(N,)``); ``{}`` when the dataset stores no true probabilities.

    Returns:
        ``oracle_logloss``, ``oracle_auc``, ``oracle_expected_logloss`` and ``excess_logloss``.

    Raises:
        DataError: a row id is not in that split (the predictions are not of this dataset).
    """
    from wukong.data.oracle import entropy, read_oracle

    table = read_oracle(dataset_uri, split)
    if table is None:
        return {}
    truth = table.lookup(np.asarray(row_ids), f"{dataset_uri} ({split})")
    predicted, labels = torch.as_tensor(probabilities), torch.as_tensor(labels)
    model, oracle = compute_metrics(predicted, labels), compute_metrics(torch.from_numpy(truth), labels)
    return {
        "oracle_logloss": oracle["logloss"],
        "oracle_auc": oracle["auc"],
        "oracle_expected_logloss": float(entropy(truth).mean()),
        "excess_logloss": model["logloss"] - oracle["logloss"],
    }


def curves(
    predictions: torch.Tensor, labels: torch.Tensor, max_points: int = 200, bins: int = 20, threshold: float = 0.5
) -> dict[str, Any]:
    """ROC curve points, a calibration curve and the confusion matrix at ``threshold`` (rows: true
    label 0/1, columns: predicted 0/1), as plain lists (JSON-ready)."""
    fpr, tpr, thresholds = BinaryROC()(predictions.float(), labels.long())
    step = max(1, len(fpr) // max_points)
    keep = torch.cat([torch.arange(0, len(fpr), step), torch.tensor([len(fpr) - 1])]).unique()
    predicted = predictions >= threshold
    actual = labels.bool()
    confusion = [
        [int((~predicted & ~actual).sum()), int((predicted & ~actual).sum())],
        [int((~predicted & actual).sum()), int((predicted & actual).sum())],
    ]
    order = torch.argsort(predictions)
    calibration = []
    for part in torch.tensor_split(order, min(bins, len(order))):
        if len(part):
            calibration.append(
                {
                    "mean_prediction": predictions[part].double().mean().item(),
                    "mean_label": labels[part].double().mean().item(),
                    "rows": len(part),
                }
            )
    return {
        "roc": {
            "fpr": fpr[keep].tolist(),
            "tpr": tpr[keep].tolist(),
            "thresholds": thresholds[keep].clamp(0, 1).tolist(),
        },
        "calibration": calibration,
        "confusion_matrix": {"threshold": threshold, "labels": ["0", "1"], "matrix": confusion},
    }


def evaluate_model(model_uri: str, data_uri: str, split: str = "test", batch_size: int = 4096) -> dict[str, Any]:
    """Metrics and curves of the trained model at ``model_uri`` on a split of ``data_uri``.

    Single-process, or under torchrun (every rank reads its share; all get the full result).

    Raises:
        DataError: the dataset's features differ from those the model was trained on.
    """
    import os

    from wukong.data.reader import DatasetReader
    from wukong.schema import FeatureSchema
    from wukong.train.outputs import load_trained_model
    from wukong.train.predict import predict

    model, card = load_trained_model(model_uri)
    rank, world = 0, 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from wukong.train.distributed import init_distributed

        env = init_distributed()
        rank, world = env.rank, env.world_size
    reader = DatasetReader(data_uri, split, batch_size, rank=rank, world_size=world, shuffle=False, drop_last=False)
    ids = model_ids(model_uri, FeatureSchema.from_dict(card["schema"]), data_uri, reader.schema)
    model.eval()
    probabilities, labels, row_ids = predict(lambda b: model(b.dense, ids(b.sparse)), reader, torch.device("cpu"))
    return {
        "model": model_uri,
        "model_name": card["model"],
        "data": data_uri,
        "split": split,
        "ids_mapped_by_value": ids.mapped,
        **compute_metrics(probabilities, labels),
        **oracle_metrics(data_uri, split, row_ids, probabilities, labels),
        "curves": curves(probabilities, labels),
    }


class ModelIds:
    """A dataset's sparse ids as a model's: ``ids(kjt)`` maps each feature's ids through ``maps`` (the
    model's id of the value each data id stands for, 0 for values the model never saw); no maps: as they are."""

    def __init__(self, maps: dict[str, torch.Tensor] | None = None) -> None:
        self.maps = maps or {}

    @property
    def mapped(self) -> bool:
        return bool(self.maps)

    def __call__(self, sparse):
        if not self.maps:
            return sparse
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        parts = torch.split(sparse.values(), sparse.length_per_key())
        values = [self.maps[k][p] if k in self.maps else p for k, p in zip(sparse.keys(), parts)]
        return KeyedJaggedTensor(keys=sparse.keys(), values=torch.cat(values), lengths=sparse.lengths())


def model_ids(model_uri: str, trained: Any, data_uri: str, given: Any) -> ModelIds:
    """How the ids of the dataset at ``data_uri`` (schema ``given``) become ids of the model at
    ``model_uri`` (trained on schema ``trained``): by raw value, through the model's copy of its
    vocabulary (:mod:`wukong.data.vocabulary`), so a model is evaluated on data prepared later (a newer
    partition, a vocabulary extended since) as it would score it in serving. A model that kept no
    vocabulary needs the dataset's ids to be its own (same table sizes).

    Raises:
        DataError: other features, another categorical encoding, or (no vocabulary) other table sizes.
    """
    from wukong.data.errors import DataError
    from wukong.data.vocabulary import dataset_vocabulary, id_map, read_vocabulary
    from wukong.train.outputs import check_features, check_schema

    check_features(trained, given, data_uri)
    try:
        known = read_vocabulary(model_uri)
    except DataError:
        check_schema(trained, given, data_uri)
        return ModelIds()
    data = dataset_vocabulary(data_uri)
    maps = {}
    for feature in given.sparse:
        mapped = id_map(known, data, feature.name)
        rows = next(f.cardinality for f in trained.sparse if f.name == feature.name)
        if len(mapped) != rows or not np.array_equal(mapped, np.arange(rows)):
            maps[feature.name] = torch.from_numpy(np.maximum(mapped, 0))
    return ModelIds(maps)
