"""``wukong sweep report``: fitted scaling laws, figures, and the tables, from a sweep's records.

For each model family, on the chosen split (test by default):

- LogLoss against forward MFLOP/example, fitted as ``L∞ + A·C^−α`` (:mod:`wukong.experiments.powerlaw`);
- excess LogLoss (LogLoss minus the oracle's, on data with known probabilities) against MFLOP/example;
- LogLoss against total training compute (``3 × forward FLOPs × examples seen``).

A sweep with a ``--grid`` trains each point at several recipes; only each point's best on the
validation split enters the fits, figures and tables (:func:`best_of_grid`), and the points table
says which recipe won.

Written beside ``sweep.jsonl``: ``scaling-*.png``, ``report.html`` (self-contained: the figures are
embedded), ``report.md`` (fitted laws and measured points) and ``laws.json`` (the fits as data). Failed
points are listed, not dropped silently.
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wukong.experiments.journal import Journal
from wukong.experiments.plots import Series, scaling_figure
from wukong.experiments.powerlaw import GAIN_FACTOR, PowerLaw, fit_power_law
from wukong.experiments.trials import last_line

# (name, metric, compute key, axis label)
VIEWS = (
    ("logloss", "logloss", "mflops_per_example", "forward MFLOP / example"),
    ("excess", "excess_logloss", "mflops_per_example", "forward MFLOP / example"),
    ("compute", "logloss", "training_flops", "total training FLOPs (3 × forward × examples)"),
)

LABELS = {
    "logloss": "LogLoss",
    "excess_logloss": "excess LogLoss",
    "mflops_per_example": "MFLOP/example",
    "training_flops": "training FLOPs",
}


@dataclass
class Law:
    family: str
    view: str
    metric: str
    compute: str
    fit: PowerLaw | None
    max_compute: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        fit = {**asdict(self.fit), "identified": self.fit.identified} if self.fit else None
        return {**{k: v for k, v in asdict(self).items() if k != "fit"}, "fit": fit}


@dataclass
class Report:
    markdown: str
    html: str
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    laws: list[Law] = field(default_factory=list)

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, png in self.figures.items():
            (folder / name).write_bytes(png)
            written.append(folder / name)
        for name, text in (
            ("report.md", self.markdown),
            ("report.html", self.html),
            ("laws.json", json.dumps([law.to_dict() for law in self.laws], indent=1) + "\n"),
        ):
            (folder / name).write_text(text)
            written.append(folder / name)
        return written


def _families(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r.get("family", r["model"]) for r in records))


def point_key(record: dict[str, Any]) -> Any:
    """What identifies a record's point within its family: its target MFLOP/example (unique in a
    sweep, and the same in sweeps reported together), else its index, else its measured size."""
    return record.get("target_mflops", record.get("point", record["mflops_per_example"]))


def best_of_grid(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of the grid's records of each (family, point), those of the recipe chosen on validation.

    The recipe (grid combination) is chosen on the point's *search seed*, its lowest seed, as the
    one with the lowest validation LogLoss among that seed's records; its records at every seed are
    kept, the other recipes' dropped. That is how a local sweep searches (its later seeds train the
    search seed's winner only), so a wider grid added later (:func:`write_report`'s ``extend``)
    re-chooses on the same seed, and a sweep that trained every recipe at every seed is judged the
    same way. Records of a sweep without a grid pass through; so does a point whose records all lack
    a validation LogLoss (it keeps its first recipe). The test split never takes part in the choice.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    kept = []
    for r in records:
        if "grid" in r:
            groups.setdefault((r.get("family", r["model"]), point_key(r)), []).append(r)
        else:
            kept.append(r)
    for group in groups.values():
        recipe = lambda r: json.dumps(r["grid"], sort_keys=True)  # noqa: E731
        search_seed = min(r.get("seed", 0) for r in group)
        searched = [r for r in group if r.get("seed", 0) == search_seed]
        best = min(searched, key=lambda r: r.get("valid", {}).get("logloss", math.inf))
        kept += [r for r in group if recipe(r) == recipe(best)]
    return kept


def _grid_choice(group: list[dict[str, Any]]) -> str:
    """The grid values a group of chosen records trained with (each seed's, where they differ)."""
    choices = [", ".join(f"{k.rpartition('.')[2]}={v}" for k, v in r["grid"].items()) for r in group]
    return " / ".join(dict.fromkeys(choices))


def _observations(records: list[dict[str, Any]], family: str, split: str, metric: str, compute: str):
    rows = [r for r in records if r.get("family", r["model"]) == family and metric in r.get(split, {})]
    return [r[compute] for r in rows], [r[split][metric] for r in rows]


def fit_laws(records: list[dict[str, Any]], split: str = "test") -> list[Law]:
    """Every (family, view) law that the records support; a law that cannot be fitted says why."""
    laws = []
    for family in _families(records):
        for view, metric, compute, _ in VIEWS:
            x, y = _observations(records, family, split, metric, compute)
            if not x:
                continue
            try:
                law = Law(family, view, metric, compute, fit_power_law(x, y), max(x))
            except ValueError as error:
                law = Law(family, view, metric, compute, None, max(x), str(error))
            laws.append(law)
    return laws


def _mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


IDENTIFIED = {True: "yes", False: "no", None: "unknown (no σ)"}


def _law_row(law: Law) -> list[str]:
    fit, names = law.fit, [law.family, LABELS[law.metric], LABELS[law.compute]]
    if fit is None:
        return [*names, law.reason, "", "", "", "", "", ""]
    if not fit.decreasing:
        return [*names, f"{fit.floor:.4f}", "no decrease", "", "", str(fit.points), "", "no"]

    def pm(value: float, std: float, fmt: str) -> str:
        return f"{value:{fmt}} ± {std:{fmt}}" if math.isfinite(std) else f"{value:{fmt}}"

    return [
        *names,
        pm(fit.floor, fit.floor_std, ".4f"),
        pm(fit.scale, fit.scale_std, ".3g"),
        pm(fit.exponent, fit.exponent_std, ".3f"),
        f"{100 * fit.gain(law.max_compute):.2f}%",
        str(fit.points),
        f"{fit.rmse:.2g}",
        IDENTIFIED[fit.identified],
    ]


def laws_table(laws: list[Law]) -> str:
    from tabulate import tabulate

    headers = [
        *("family", "loss", "compute C", "L∞", "A", "α", f"gain per {GAIN_FACTOR}× at max C", "points", "RMSE"),
        "law identified (α > 2σ)",
    ]
    return tabulate([_law_row(law) for law in laws], headers=headers, tablefmt="github", disable_numparse=True)


def points_table(records: list[dict[str, Any]], split: str) -> str:
    """One row per (family, point): its cost and its quality, mean ± std over seeds."""
    from tabulate import tabulate

    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r.get("family", r["model"]), point_key(r)), []).append(r)
    has_excess = any("excess_logloss" in r.get(split, {}) for r in records)
    has_grid = any("grid" in r for r in records)
    order = _families(records)
    rows = []
    for (family, _), group in sorted(
        groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[1][0]["mflops_per_example"])
    ):
        first = group[0]
        row = [
            family,
            f"{first['mflops_per_example']:.3g}",
            f"{first['parameters']['dense']:,}",
            f"{first['training_flops']:.3g}",
            str(len(group)),
            _mean_std([r["valid"]["logloss"] for r in group if "valid" in r]),
            _mean_std([r[split]["logloss"] for r in group]),
            _mean_std([r[split]["auc"] for r in group]),
        ]
        if has_excess:
            row.append(_mean_std([r[split]["excess_logloss"] for r in group if "excess_logloss" in r[split]], 5))
        if has_grid:
            row.append(_grid_choice([r for r in group if "grid" in r]))
        row.append(f"{statistics.mean(r['wall_seconds'] for r in group):.0f}")
        rows.append(row)
    headers = ["family", "MFLOP/ex", "dense params", "training FLOPs", "seeds", "valid LogLoss"]
    headers += [f"{split} LogLoss", f"{split} AUC", *([f"{split} excess LogLoss"] if has_excess else [])]
    headers += [*(["chosen on valid"] if has_grid else []), "time (s)"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _grid_note(finished: list[dict[str, Any]], chosen: list[dict[str, Any]]) -> str:
    """What the report says of a grid: how many recipes each point trained, how its recipe is chosen,
    and which points report fewer seeds than they trained (a winner from a wider grid whose other
    seeds are still to train); empty without a grid."""
    recipes: dict[tuple[Any, ...], set[str]] = {}
    seeds: dict[tuple[Any, ...], set[Any]] = {}
    kept: dict[tuple[Any, ...], set[Any]] = {}
    for r in finished:
        if "grid" in r:
            key = (r.get("family", r["model"]), point_key(r))
            recipes.setdefault(key, set()).add(json.dumps(r["grid"], sort_keys=True))
            seeds.setdefault(key, set()).add(r.get("seed"))
    if not recipes:
        return ""
    for r in chosen:
        if "grid" in r:
            kept.setdefault((r.get("family", r["model"]), point_key(r)), set()).add(r.get("seed"))
    counts = sorted({len(values) for values in recipes.values()})
    trained = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    short = [
        f"{family} at {point} ({len(kept.get((family, point), ()))} of {len(seeds[family, point])} seeds)"
        for family, point in recipes
        if len(kept.get((family, point), ())) < len(seeds[family, point])
    ]
    note = (
        f" Each point trained at {trained} recipes (a grid); the one with the lowest validation LogLoss on the "
        "point's first seed counts, at every seed."
    )
    if short:
        note += f" Reported with fewer seeds than trained (train the winner's other seeds): {', '.join(short)}."
    return note


def build_report(records: list[dict[str, Any]], split: str = "test", title: str = "Scaling sweep") -> Report:
    """Fits, figures and tables of a sweep's records (failed ones listed apart)."""
    finished = [r for r in records if r.get("status") == "ok"]
    ok = best_of_grid(finished)
    failed = [r for r in records if r.get("status") != "ok"]
    laws = fit_laws(ok, split)
    figures = {}
    for view, metric, compute, xlabel in VIEWS:
        series = []
        for family in _families(ok):
            x, y = _observations(ok, family, split, metric, compute)
            if x:
                fit = next((law.fit for law in laws if law.family == family and law.view == view), None)
                series.append(Series(family, x, y, fit))
        if series:
            ylabel = f"{split} {'excess LogLoss (over the oracle)' if view == 'excess' else 'LogLoss'}"
            figures[f"scaling-{view}.png"] = scaling_figure(
                series, xlabel, ylabel, f"{title}: {ylabel} vs {xlabel.split(' (')[0]}", log_y=view == "excess"
            )
    failures = "".join(f"- {r['id']}: {last_line(r.get('error') or 'failed')}\n" for r in failed)
    grid = _grid_note(finished, ok)
    note = (
        f"Each point: one pass over the same training rows; {split} split; mean ± std over seeds.{grid} "
        f"Fits: L = L∞ + A·C^−α, least squares over every seed's result, ± one standard error; "
        "a law is identified only where α exceeds two standard errors (otherwise the curve is no evidence of one)."
    )
    markdown = (
        f"# {title}\n\n{note}\n\n## Fitted laws\n\n{laws_table(laws)}\n\n## Points\n\n{points_table(ok, split)}\n"
        + (f"\n## Failed points\n\n{failures}" if failed else "")
    )
    images = "".join(
        f'<img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">\n'
        for name, png in figures.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}img{max-width:48%;margin:4px}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>{images}"
        f"<h2>Fitted laws</h2>{_html_table(laws_table(laws))}<h2>Points</h2>{_html_table(points_table(ok, split))}"
        + (f"<h2>Failed points</h2><pre>{html.escape(failures)}</pre>" if failed else "")
        + "</body></html>\n"
    )
    return Report(markdown, page, figures, laws)


def _html_table(markdown_table: str) -> str:
    """A GitHub-style Markdown table as an HTML table."""
    lines = [line.strip().strip("|") for line in markdown_table.splitlines()]
    header, body = lines[0], lines[2:]

    def cells(line: str, tag: str) -> str:
        return "".join(f"<{tag}>{html.escape(cell.strip())}</{tag}>" for cell in line.split("|"))

    return f"<table><tr>{cells(header, 'th')}</tr>" + "".join(f"<tr>{cells(b, 'td')}</tr>" for b in body) + "</table>"


def write_report(
    folder: Path,
    split: str = "test",
    journal: str = "sweep.jsonl",
    add: Sequence[Path] = (),
    output: Path | None = None,
    extend: Sequence[Path] = (),
) -> list[Path]:
    """The report of the sweep in ``folder``, written beside its journal (or in ``output``).

    ``add``: other sweeps' folders whose points join this report: points added later (another FLOP
    range, other families) on the same data, rows, preset, overrides and grid, which is checked
    (:func:`check_reportable_together`). A point measured in two of them is refused, not averaged.

    ``extend``: other sweeps' folders that trained points of these at other values of the same grid
    keys (a wider grid, e.g. one step beyond an edge where a rate was chosen): their records join
    each point's choice of recipe (:func:`best_of_grid`, on the search seed). The same recipe at the
    same seed in two folders is refused.
    """
    from wukong.data.errors import DataError

    records = list(Journal(folder / journal).records().values())
    if not records:
        raise DataError(f"{folder / journal}: no finished sweep points to report; run `wukong sweep` first")
    for other in add:
        check_reportable_together(folder, other)
        more = list(Journal(other / journal).records().values())
        both = sorted(_points(more) & _points(records))
        if both:
            named = ", ".join(f"{family} at {point}" for family, point in both)
            raise DataError(f"{other}: measures points that {folder} measures too ({named}); add only new points")
        records += more
    for other in extend:
        check_reportable_together(folder, other, extending=True)
        more = list(Journal(other / journal).records().values())
        both = sorted(_trials(more) & _trials(records))
        if both:
            named = ", ".join(f"{family} at {point}, {recipe}, seed {seed}" for family, point, recipe, seed in both)
            raise DataError(f"{other}: trains what is already reported ({named}); extend only with other values")
        records += more
    return build_report(records, split).write(output or folder)


def _trials(records: list[dict[str, Any]]) -> set[tuple[str, Any, str, Any]]:
    return {
        (r.get("family", r["model"]), point_key(r), json.dumps(r.get("grid"), sort_keys=True), r.get("seed"))
        for r in records
    }


def _points(records: list[dict[str, Any]]) -> set[tuple[str, Any]]:
    return {(r.get("family", r["model"]), point_key(r)) for r in records}


# Settings that may differ between sweeps reported together: which points and seeds each trained.
POINT_SETTINGS = ("models", "targets_mflops", "seeds", "end_seeds")


def check_reportable_together(folder: Path, other: Path, settings: str = "sweep.json", extending: bool = False) -> None:
    """Raise unless ``other``'s sweep trained on ``folder``'s data budget and recipes (``extending``:
    and a grid of the same keys, at other values).

    Raises:
        DataError: either has no settings file, or they differ in anything but :data:`POINT_SETTINGS`
            (and the grid's values, when ``extending``).
    """
    from wukong.data.errors import DataError

    pinned = []
    for path in (folder / settings, other / settings):
        if not path.is_file():
            raise DataError(f"{path}: missing; only folders written by `wukong sweep` can be reported together")
        pinned.append(json.loads(path.read_text()))
    ours, theirs = pinned
    free = POINT_SETTINGS
    if extending:
        keys = [sorted(p.get("grid") or {}) for p in pinned]
        if not keys[0] or keys[0] != keys[1]:
            raise DataError(f"{other}: extends a grid only with other values of the same keys ({keys[0]} vs {keys[1]})")
        free = (*POINT_SETTINGS, "grid")
    differ = sorted(k for k in set(ours) | set(theirs) if k not in free and ours.get(k) != theirs.get(k))
    if differ:
        was = ", ".join(f"{k}={ours.get(k)!r} vs {theirs.get(k)!r}" for k in differ)
        raise DataError(f"{other}: another experiment than {folder} ({was}); report it on its own")
