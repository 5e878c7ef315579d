"""Side-by-side results of several models over seeds, with the 2σ verdict (``benchmarks/results.py``).

Each row is a labelled config (a model with its tuned preset, or a variant) trained with several
seeds and evaluated on the validation and test splits. Quality is the mean ± sample standard
deviation over seeds. The verdict compares two rows by the gap in mean test AUC against
``σ = max(σ₁, σ₂)``, the larger of their seed standard deviations (the 2σ rule):

- gap ≥ 2σ: the first row is better; gap ≤ −2σ: worse; otherwise the difference is within twice the
  seed noise and the rows tie.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wukong.experiments.trials import TrialSpec

SIGMAS = 2.0
WUKONG = "wukong"  # rows of any other model are the baselines


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: what to train, under which label."""

    label: str
    model: str
    preset: str
    overrides: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    def specs(self, seeds: Sequence[int]) -> list[TrialSpec]:
        return [
            TrialSpec(
                id=f"{self.slug}-s{seed}",
                model=self.model,
                preset=self.preset,
                overrides=self.overrides,
                seed=seed,
                splits=("valid", "test"),
                meta={"label": self.label},
            )
            for seed in seeds
        ]


@dataclass
class Row:
    """An entry's results over seeds."""

    entry: Entry
    records: list[dict[str, Any]] = field(default_factory=list)

    def values(self, split: str, metric: str) -> list[float]:
        return [r[split][metric] for r in self.records if r.get("status") == "ok"]

    def mean(self, split: str = "test", metric: str = "auc") -> float:
        values = self.values(split, metric)
        return statistics.mean(values) if values else float("nan")

    def std(self, split: str = "test", metric: str = "auc") -> float:
        values = self.values(split, metric)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def cell(self, split: str, metric: str) -> str:
        if not self.values(split, metric):
            return "failed"
        return f"{self.mean(split, metric):.4f} ± {self.std(split, metric):.4f}"


def verdict(a: Row, b: Row) -> tuple[str, float, float]:
    """``better``/``worse``/``tie`` of ``a`` against ``b`` on mean test AUC, the gap and σ (see module doc)."""
    gap = a.mean() - b.mean()
    sigma = max(a.std(), b.std())
    if sigma == 0:
        return ("better" if gap > 0 else "worse" if gap < 0 else "tie"), gap, sigma
    if gap >= SIGMAS * sigma:
        return "better", gap, sigma
    if gap <= -SIGMAS * sigma:
        return "worse", gap, sigma
    return "tie", gap, sigma


def row_verdict(row: Row, best: Row) -> str:
    """The table's verdict column: each row against the best row of the table."""
    if row is best:
        return "best"
    outcome, gap, sigma = verdict(row, best)
    return {
        "tie": f"tie with best ({gap:+.4f}, within {SIGMAS:g}σ = {SIGMAS * sigma:.4f})",
        "worse": f"below best ({gap:+.4f} < −{SIGMAS:g}σ = {SIGMAS * sigma:.4f})",
        "better": "best",
    }[outcome]


def table(rows: list[Row]) -> str:
    from tabulate import tabulate

    ok = [r for r in rows if r.values("test", "auc")]
    best = max(ok, key=lambda r: r.mean()) if ok else None
    body = []
    for row in rows:
        first = next((r for r in row.records if r.get("status") == "ok"), None)
        body.append(
            [
                row.entry.label,
                f"{first['mflops_per_example']:.3g}" if first else "",
                row.cell("valid", "auc"),
                row.cell("test", "auc"),
                row.cell("test", "logloss"),
                ", ".join(str(r.get("best_step", "")) for r in row.records if r.get("status") == "ok"),
                row_verdict(row, best) if best and row in ok else "failed",
            ]
        )
    headers = ["model", "MFLOP/example", "valid AUC", "test AUC", "test LogLoss", "best step per seed", "verdict"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def headline(rows: list[Row]) -> str:
    """Best Wukong row against the best baseline row, by the 2σ rule."""
    ok = [r for r in rows if r.values("test", "auc")]
    wukong = [r for r in ok if r.entry.model == WUKONG]
    baselines = [r for r in ok if r.entry.model != WUKONG]
    if not wukong or not baselines:
        return "No Wukong-versus-baseline verdict: both need at least one finished row."
    best_wukong = max(wukong, key=lambda r: r.mean())
    best_baseline = max(baselines, key=lambda r: r.mean())
    outcome, gap, sigma = verdict(best_wukong, best_baseline)
    meaning = {
        "better": f"Wukong is better than the best baseline by more than {SIGMAS:g}σ.",
        "worse": f"Wukong is worse than the best baseline by more than {SIGMAS:g}σ.",
        "tie": f"The difference is within {SIGMAS:g}σ: no measurable difference.",
    }[outcome]
    return (
        f"Best Wukong ({best_wukong.entry.label}, {best_wukong.cell('test', 'auc')}) vs best baseline "
        f"({best_baseline.entry.label}, {best_baseline.cell('test', 'auc')}): {gap:+.4f} test AUC; "
        f"σ = {sigma:.4f} (the larger seed standard deviation). {meaning}"
    )
