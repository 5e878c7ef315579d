"""``wukong sweep``: every model family upscaled over a FLOP range, trained on one data budget.

A sweep point is ``(family, target MFLOP/example, seed)``. Its config is the preset's model upscaled
to the target by the family's scaling rule (:func:`wukong.model.scaling.scaled_config`, or width
scaling with :func:`~wukong.model.scaling.config_for_flops` where that is absent), written as
``--set model.*`` overrides so the record says exactly what was trained. Every point sees the same
data budget: one pass over ``rows`` training rows (``train.epochs=1``, ``train.max_steps = rows //
batch_size``, no early stopping; the rows are the first of the seed's shuffled order, so every family
sees the same rows at one seed, and all of the training split when ``rows`` covers it), as
production recommenders train, so
total training compute is proportional to MFLOP/example. Each point is evaluated on the validation
and test splits; the records go to ``sweep.jsonl`` and :mod:`wukong.experiments.report` fits and
plots them.

Recipes: a fixed learning rate favours some sizes over others (a small model may want a higher rate
than a large one), which bends the curve of a family by its recipe rather than its architecture.
``grid`` (``--grid train.learning_rate=0.001,0.002,0.004``, repeatable) trains every point at every
combination of the listed values; the report keeps, for each (family, point), the combination with
the lowest **validation** LogLoss on the point's first seed, at every seed
(:func:`wukong.experiments.report.best_of_grid`), so every family and size gets the same tuning
effort and the test split never chooses. Locally the grid is searched on the first seed only: once
a point's seed-0 trials are done, its other seeds train the combination that won there
(:meth:`Sweep.run`), as a paper tunes on one seed and reports several. A wider grid can be added
later by another sweep over the same points (``wukong sweep report --extend``).
Seeds may be raised when a sweep is resumed (``--seeds``, ``--end-seeds``), to add seeds to a finished
sweep; nothing else may change.

Targets: ``"0.03:10"`` with ``points=K`` is K targets spaced evenly in log between the ends;
``"0.1,0.3,1"`` lists them. A target a family cannot reach (below the cost of its fixed parts) is
skipped with a warning. Seeds: ``seeds`` per point, and ``end_seeds`` (when given) at each family's
smallest and largest point, where the ends of a law are pinned down.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wukong.config import ConfigError, ModelConfig, load_config
from wukong.experiments.space import format_value
from wukong.experiments.trials import TrialRunner, TrialSpec, pin_settings
from wukong.schema import FeatureSchema

JOURNAL = "sweep.jsonl"
SETTINGS = "sweep.json"
SPLITS = ("valid", "test")


def parse_targets(text: str, points: int) -> list[float]:
    """``"LOW:HIGH"`` → ``points`` targets evenly spaced in log; ``"A,B,C"`` → those targets."""
    try:
        if ":" in text:
            low, high = (float(v) for v in text.split(":"))
            if points < 1 or not 0 < low <= high < math.inf:
                raise ValueError
            if points == 1:
                return [low]
            return [low * (high / low) ** (i / (points - 1)) for i in range(points)]
        targets = sorted(float(v) for v in text.split(","))
        if not targets or targets[0] <= 0 or targets[-1] == math.inf:
            raise ValueError
        return targets
    except ValueError:
        raise ConfigError(
            f"--mflops {text!r}: give LOW:HIGH with 0 < LOW <= HIGH (and --points >= 1), or a list like 0.1,0.3,1"
        ) from None


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["train.learning_rate=0.001,0.002"]`` → ``{"train.learning_rate": ["0.001", "0.002"]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        choices = [v.strip() for v in values.split(",") if v.strip()] if sep else []
        if not key or not choices:
            raise ConfigError(f"--grid {item!r}: give KEY=V1,V2,... (e.g. train.learning_rate=0.001,0.002)")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        if len(set(choices)) != len(choices):
            raise ConfigError(f"--grid {item!r}: a value is listed twice")
        grid[key] = choices
    return grid


def grid_combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, in order (one empty combination for no grid)."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def scale_model(family: str, schema: FeatureSchema, base: ModelConfig, target_mflops: float) -> ModelConfig:
    """The family's upscaling rule (``scaled_config``) where the model package has one, else width scaling."""
    from wukong.model import scaling

    rule = getattr(scaling, "scaled_config", None)
    if rule is not None:
        return rule(family, schema, base, target_mflops)
    return scaling.config_for_flops(family, schema, base, target_mflops)


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            flat.update(_flatten(getattr(value, f.name), f"{prefix}.{f.name}"))
        return flat
    return {prefix: value}


def model_overrides(base: ModelConfig, scaled: ModelConfig) -> list[str]:
    """``--set model.KEY=VALUE`` for every setting in which ``scaled`` differs from ``base``."""
    before, after = _flatten(base, "model"), _flatten(scaled, "model")
    return [f"{key}={format_value(value)}" for key, value in after.items() if before.get(key) != value]


@dataclass
class Sweep:
    """The sweep's settings; :meth:`plan` makes its trials and :meth:`run` runs them (resumably)."""

    data: str
    models: list[str]
    targets: list[float]
    output: Path = Path("sweep")  # where run() records (plan() needs no folder)
    seeds: int = 1
    end_seeds: int = 0  # seeds at each family's smallest and largest point (0: as many as the others)
    rows: int = 0  # training rows seen by every point (0: the whole training split)
    preset: str = "default"
    overrides: list[str] = field(default_factory=list)
    grid: dict[str, list[str]] = field(default_factory=dict)  # key -> values, every combination trained
    parallel: int = 1
    nproc: int = 1
    log: Any = print

    def settings(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "models": list(self.models),
            "targets_mflops": list(self.targets),
            "seeds": self.seeds,
            "end_seeds": self.end_seeds,
            "rows": self.rows,
            "preset": self.preset,
            "overrides": list(self.overrides),
            # None without a grid: a sweep.json written before grids existed (no key) still matches
            "grid": {k: list(v) for k, v in self.grid.items()} or None,
        }

    def budget(self, train_rows: int, batch_size: int) -> tuple[int, list[str]]:
        """Rows seen and the overrides that make every point one pass over them."""
        rows = self.rows or train_rows
        if rows > train_rows:
            raise ConfigError(f"--rows {rows}: the dataset has only {train_rows} training rows")
        steps = rows // batch_size
        if steps < 1:
            raise ConfigError(f"--rows {rows} is less than one batch ({batch_size}); give more rows")
        return steps * batch_size, ["train.epochs=1", f"train.max_steps={steps}", "train.patience=0"]

    def plan(self) -> list[TrialSpec]:
        """Every point's trial (at every grid combination), first seed first and small models first within a seed."""
        from wukong.data.manifest import read_manifest
        from wukong.io import open_storage

        if self.seeds < 1 or self.end_seeds < 0:
            raise ConfigError(f"--seeds must be >= 1 and --end-seeds >= 0, got {self.seeds} and {self.end_seeds}")
        manifest = read_manifest(open_storage(self.data))
        base_cfg = load_config(self.preset, self.overrides)
        combinations = grid_combinations(self.grid)
        for combination in combinations:  # a bad key or value fails here, before any training
            load_config(self.preset, [*self.overrides, *(f"{k}={v}" for k, v in combination.items())])
        rows, budget = self.budget(manifest.rows("train"), base_cfg.train.batch_size)
        points: list[tuple[int, str, float, list[str], int]] = []  # (index, family, target, overrides, seeds)
        for family in self.models:
            base = load_config(self.preset, [*self.overrides, f"model.name={family}"]).model
            reachable = []
            for index, target in enumerate(self.targets):
                try:
                    scaled = scale_model(family, manifest.schema, base, target)
                except ValueError as error:
                    self.log(f"skipped {family} at {target:.3g} MFLOP/example: {error}")
                    continue
                reachable.append((index, family, target, model_overrides(base, scaled)))
            if not reachable:
                raise ConfigError(f"{family}: no target in {self.targets} is reachable; change --mflops")
            ends = (reachable[0][0], reachable[-1][0])
            points += [(*p, self.end_seeds or self.seeds if p[0] in ends else self.seeds) for p in reachable]
        return [
            TrialSpec(
                id=f"{family}-{index:02d}-s{seed}" + (f"-g{number:02d}" if self.grid else ""),
                model=family,
                preset=self.preset,
                overrides=(*self.overrides, *scaled, *(f"{k}={v}" for k, v in combination.items()), *budget),
                seed=seed,
                splits=SPLITS,
                meta={
                    "family": family,
                    "point": index,
                    "target_mflops": target,
                    "rows": rows,
                    **({"grid": combination} if self.grid else {}),
                },
            )
            for seed in range(max(self.seeds, self.end_seeds))
            for index, family, target, scaled, seeds in points
            for number, combination in enumerate(combinations)
            if seed < seeds
        ]

    def run(self) -> list[dict[str, Any]]:
        """Run (or resume) the sweep; returns every point's record. With a grid and more than one seed, the
        first seed's trials run first, and the other seeds then train only each point's winner."""
        specs = self.plan()  # checks the dataset and every setting before the folder is claimed
        pin_settings(self.output / SETTINGS, self.settings(), may_change=("seeds", "end_seeds"))
        runner = TrialRunner(self.data, self.output, JOURNAL, parallel=self.parallel, nproc=self.nproc, log=self.log)
        if self.grid and any(s.seed > 0 for s in specs):
            first = [s for s in specs if s.seed == 0]
            specs = only_chosen(specs, chosen_recipes(list(runner.run(first).values())))
        records = runner.run(specs)
        return [records[s.id] for s in specs if s.id in records]


def only_chosen(specs: list[TrialSpec], chosen: dict[tuple[str, int], dict[str, str]]) -> list[TrialSpec]:
    """``specs`` less the later seeds' trials of grid combinations other than their point's ``chosen`` one
    (a point without a choice keeps them all)."""

    def kept(spec: TrialSpec) -> bool:
        point = (spec.meta["family"], spec.meta["point"])
        return spec.seed == 0 or chosen.get(point, spec.meta["grid"]) == spec.meta["grid"]

    return [spec for spec in specs if kept(spec)]


def chosen_recipes(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, str]]:
    """For each (family, point), the grid combination of its best finished record on validation."""
    from wukong.experiments.report import best_of_grid

    finished = [r for r in records if r.get("status") == "ok" and "grid" in r]
    return {(r["family"], r["point"]): r["grid"] for r in best_of_grid(finished)}
