"""A self-contained HTML report of a training run and its evaluation (plots embedded as PNG data).

Sections: headline metrics, the loss and validation curves from ``history.jsonl``, the ROC and
calibration curves of the evaluation, and the model card. No external assets: it renders in the
Kubeflow UI's HTML viewer and from a file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import matplotlib

from wukong.headline import HEADLINE

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def loss_plot(history: list[dict[str, Any]]) -> str:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    steps = [r for r in history if "loss" in r]
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="training loss")
    valid = [r for r in history if "valid" in r]
    left.plot([r["step"] for r in valid], [r["valid"]["logloss"] for r in valid], "o-", label="validation logloss")
    left.set_xlabel("step")
    left.legend()
    right.plot([r["step"] for r in valid], [r["valid"]["auc"] for r in valid], "o-", color="tab:green")
    right.set_xlabel("step")
    right.set_ylabel("validation AUC")
    return _png(figure)


def roc_plot(curves: dict[str, Any], auc: float) -> str:
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot(curves["roc"]["fpr"], curves["roc"]["tpr"], label=f"AUC {auc:.4f}")
    axis.plot([0, 1], [0, 1], "--", color="grey")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.legend(loc="lower right")
    return _png(figure)


def calibration_plot(curves: dict[str, Any]) -> str:
    figure, axis = plt.subplots(figsize=(4, 4))
    bins = curves["calibration"]
    axis.plot([b["mean_prediction"] for b in bins], [b["mean_label"] for b in bins], "o-")
    axis.plot([0, 1], [0, 1], "--", color="grey")
    axis.set_xlabel("mean prediction")
    axis.set_ylabel("mean label")
    return _png(figure)


def render(card: dict[str, Any], history: list[dict[str, Any]], evaluation: dict[str, Any]) -> str:
    metrics = {k: evaluation[k] for k in HEADLINE if k in evaluation}
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>"
        if isinstance(v, float)
        else f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
        for k, v in metrics.items()
    )
    images = [
        ("Training and validation", loss_plot(history)),
        ("ROC curve", roc_plot(evaluation["curves"], evaluation["auc"])),
        ("Calibration", calibration_plot(evaluation["curves"])),
    ]
    figures = "".join(f'<figure><img alt="{t}" src="{src}"><figcaption>{t}</figcaption></figure>' for t, src in images)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Wukong run: {html.escape(str(card.get("model")))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}figure{{display:inline-block;margin:1em}}
pre{{background:#f6f6f6;padding:1em;overflow:auto;max-height:30em}}</style></head><body>
<h1>{html.escape(str(card.get("model")))} on {html.escape(str(evaluation.get("split")))} split</h1>
<table>{rows}</table>
{figures}
<h2>Model card</h2><pre>{html.escape(json.dumps(card, indent=1, default=str))}</pre>
</body></html>
"""


def markdown(card: dict[str, Any], evaluation: dict[str, Any]) -> str:
    """A short Markdown summary for the Kubeflow UI's Markdown viewer."""
    rows = "\n".join(
        f"| {k} | {evaluation[k]:.4f} |" if isinstance(evaluation[k], float) else f"| {k} | {evaluation[k]} |"
        for k in HEADLINE
    )
    return (
        f"## {card.get('model')} on the {evaluation.get('split')} split\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\n"
        f"{card.get('mflops_per_example', 0):.2f} MFLOP/example, {card.get('steps')} steps "
        f"(best at step {card.get('best_step')}), trained on {card.get('world_size')} process(es).\n"
    )
