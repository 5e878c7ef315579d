"""The scaling figure: loss against compute on a log axis, one colour per model family.

Every seed's result is a faint dot, each compute value's mean ± standard deviation over seeds a
marker with error bars, and the fitted power law a dashed line whose formula is in the legend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np

from wukong.config import MODEL_NAMES
from wukong.experiments.powerlaw import PowerLaw

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PALETTE = plt.get_cmap("tab10").colors


def colour(family: str) -> tuple[float, float, float]:
    """A fixed colour per family (the same in every figure)."""
    order = [*MODEL_NAMES, family]
    return PALETTE[order.index(family) % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    """One family's measured points: ``x[i]`` compute, ``y[i]`` loss (several entries per x with seeds)."""

    family: str
    x: Sequence[float]
    y: Sequence[float]
    fit: PowerLaw | None = None


def scaling_figure(series: Sequence[Series], xlabel: str, ylabel: str, title: str, log_y: bool = False) -> bytes:
    """The figure as PNG bytes."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    low, high = np.inf, 0.0
    for s in series:
        x, y = np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)
        if not len(x):
            continue
        tint = colour(s.family)
        low, high = min(low, x.min()), max(high, x.max())
        axis.scatter(x, y, s=12, color=tint, alpha=0.35, linewidths=0)
        values = np.unique(x)
        means = np.array([y[x == v].mean() for v in values])
        spread = np.array([y[x == v].std(ddof=1) if (x == v).sum() > 1 else 0.0 for v in values])
        label = s.family
        if s.fit is not None:
            label += f": {s.fit.formula()}"
        axis.errorbar(values, means, yerr=spread, fmt="o", color=tint, capsize=3, markersize=5, label=label)
        if s.fit is not None and s.fit.decreasing:
            grid = np.geomspace(values.min() / 1.5, values.max() * 1.5, 100)
            axis.plot(grid, s.fit(grid), "--", color=tint, linewidth=1.2)
    axis.set_xscale("log")
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.25)
    if series:
        axis.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
