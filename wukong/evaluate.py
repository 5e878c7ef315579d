"""Quality metrics of click-through predictions, and curves to plot them.

- ``auc``: area under the ROC curve (torchmetrics ``BinaryAUROC``, exact);
- ``logloss``: mean binary cross-entropy ``-mean(y log p + (1-y) log(1-p))``;
- ``ne``: normalized entropy, logloss divided by the entropy of the base rate
  ``p̄ = mean(y)``: ``H(p̄) = -(p̄ log p̄ + (1-p̄) log(1-p̄))``. Below 1 means better than predicting
  the base rate for everyone (the paper's and DLRM's headline metric);
- ``calibration``: mean prediction / mean label (1 is calibrated);
- ``rows``, ``positive_rate``;
- curves: ROC points (at most ``max_points``) and a calibration curve (mean prediction vs mean label
  in equal-count bins of the prediction).
"""

from __future__ import annotations

import math
from typing import Any

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


def curves(predictions: torch.Tensor, labels: torch.Tensor, max_points: int = 200, bins: int = 20) -> dict[str, Any]:
    """ROC curve points and a calibration curve, as plain lists (JSON-ready)."""
    fpr, tpr, _ = BinaryROC()(predictions.float(), labels.long())
    step = max(1, len(fpr) // max_points)
    keep = torch.cat([torch.arange(0, len(fpr), step), torch.tensor([len(fpr) - 1])]).unique()
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
    return {"roc": {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}, "calibration": calibration}
