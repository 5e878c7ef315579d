"""``wukong tune``: seeded hyper-parameter search on the validation split, resumable, every trial recorded.

Trials run in rounds of ``parallel`` (the runner's parallel local processes). The parameters of a round
are drawn by a fresh optuna sampler seeded with ``(seed, round)`` that is told every earlier round's
results (read back from ``trials.jsonl``); within a round, TPE's *constant liar* keeps the draws apart.
So the trials depend only on the seed, the round size and the earlier results, never on timing: a
killed search resumes with the same parameters, and ``--trials`` can be raised to extend a finished one.

- ``sampler="tpe"``: optuna's Tree-structured Parzen Estimator (multivariate), after
  ``startup_trials`` random ones; ``sampler="random"``: independent uniform draws.
- No trial repeats a configuration an earlier one used while the sampler can find an unseen one (a
  space of choices alone is small, and both samplers draw with repeats).
- Selection uses the validation split only (``metric``: ``auc``, maximised, or ``logloss``, minimised);
  the test split is never evaluated here.

Outputs in the output folder: ``trials.jsonl`` (one record per trial, see
:mod:`wukong.experiments.trials`), ``trials.md`` (the table, best first), ``best.yaml`` (the best
trial's whole config: ``wukong train --config best.yaml``), ``tune.json`` (the settings a resume must match).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from wukong.config import ConfigError, config_to_yaml, load_config
from wukong.data.errors import DataError
from wukong.experiments.space import SearchSpace
from wukong.experiments.trials import TrialRunner, TrialSpec, check_dataset, pin_settings

METRICS = {"auc": "maximize", "logloss": "minimize"}
SAMPLERS = ("tpe", "random")
JOURNAL = "trials.jsonl"
SETTINGS = "tune.json"
TABLE = "trials.md"
BEST = "best.yaml"


REDRAWS = 20  # draws of each kind that look for a configuration not tried yet (see Tuner._ask_unseen)


def trial_id(number: int) -> str:
    return f"trial-{number:04d}"


def configuration_key(params: dict[str, Any]) -> str:
    """One text per distinct configuration (parameter order does not matter)."""
    return json.dumps(params, sort_keys=True, default=str)


@dataclass
class Tuner:
    """N trials of ``space`` for ``model`` on ``data``, written to ``output`` (see the module docstring)."""

    data: str
    model: str
    space: SearchSpace
    output: Path
    trials: int
    seed: int = 0
    sampler: str = "tpe"
    metric: str = "auc"
    preset: str = "default"
    overrides: list[str] = field(default_factory=list)
    parallel: int = 1
    startup_trials: int = 10
    nproc: int = 1
    log: Any = print

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        fixed = [*self.overrides, f"model.name={self.model}"]
        load_config(self.preset, fixed)
        self.space.check(self.preset, fixed)

    @cached_property
    def runner(self) -> TrialRunner:
        """The local runner of :meth:`run` (the tuning pipeline plans and ranks without one)."""
        return TrialRunner(self.data, self.output, JOURNAL, parallel=self.parallel, nproc=self.nproc, log=self.log)

    # -- planning ---------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What a resumed search must share with the first run (``trials`` may grow)."""
        return {
            "data": self.data,
            "model": self.model,
            "space": [[p.key, p.kind, list(p.values)] for p in self.space.parameters],
            "seed": self.seed,
            "sampler": self.sampler,
            "metric": self.metric,
            "preset": self.preset,
            "overrides": list(self.overrides),
            "round_size": self.parallel,
            "startup_trials": self.startup_trials,
        }

    def _make_sampler(self, round_index: int):
        import optuna

        seed = self.seed * 100_003 + round_index
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=self.startup_trials, multivariate=True, constant_liar=True
            )

    def objective(self, record: dict[str, Any]) -> float | None:
        """The validation metric of a finished trial (None if it failed or is not finite)."""
        value = record.get("valid", {}).get(self.metric) if record.get("status") == "ok" else None
        return value if value is not None and math.isfinite(value) else None

    def plan_round(self, first: int, count: int, history: list[dict[str, Any]]) -> list[TrialSpec]:
        """Trials ``first .. first+count-1``, drawn knowing the ``history`` of earlier trials' records."""
        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction=METRICS[self.metric], sampler=self._make_sampler(first // self.parallel))
        distributions = self.space.distributions()
        for record in sorted(history, key=lambda r: r["trial"]):
            value = self.objective(record)
            state = TrialState.COMPLETE if value is not None else TrialState.FAIL
            study.add_trial(
                create_trial(params=record["params"], distributions=distributions, value=value, state=state)
            )
        seen = {configuration_key(r["params"]) for r in history}
        specs = []
        for number in range(first, first + count):
            params = self._ask_unseen(study, distributions, seen, number)
            specs.append(
                TrialSpec(
                    id=trial_id(number),
                    model=self.model,
                    preset=self.preset,
                    overrides=(*self.overrides, *self.space.overrides(params)),
                    seed=self.seed,
                    splits=("valid",),
                    meta={"trial": number, "params": params},
                )
            )
        return specs

    def _ask_unseen(self, study, distributions, seen: set[str], number: int) -> dict[str, Any]:
        """The sampler's next parameters that no earlier trial (nor one of this round) used.

        A space of choices alone is small, and both samplers draw from it with repeats (TPE, once it
        models the results, keeps proposing its favourite); a repeat would spend a trial of the budget
        on a result already known. Up to ``REDRAWS`` draws of the sampler look for an unseen
        configuration, each one redrawn told to the study as failed (TPE leaves failures out of its
        model); then up to ``REDRAWS`` uniform draws, seeded by the trial. Deterministic like every
        draw here: the same seed and history draw the same way.
        """
        import optuna
        from optuna.trial import TrialState

        uniform = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.seed * 100_003 + number))
        for source in (study, uniform):
            for _ in range(REDRAWS):
                trial = source.ask(distributions)
                key = configuration_key(trial.params)
                if key not in seen:
                    seen.add(key)
                    return trial.params
                source.tell(trial, state=TrialState.FAIL)
        self.log(f"{trial_id(number)}: no configuration of the space is left untried; it repeats one")
        return trial.params

    # -- running ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) the search; write the table and the best preset; return the best record."""
        check_dataset(self.data)  # before the folder is claimed by these settings
        pin_settings(self.output / SETTINGS, self.settings(), may_change=("trials",))
        for first in range(0, self.trials, self.parallel):
            done = self.runner.journal.records()
            count = min(self.parallel, self.trials - first)
            if all(trial_id(n) in done for n in range(first, first + count)):
                continue  # a finished round stays as it was (later rounds were drawn knowing its failures)
            history = [r for r in done.values() if r["trial"] < first]
            self.runner.run(self.plan_round(first, count, history))
        records = [r for r in self.runner.journal.records().values() if r["trial"] < self.trials]
        ranked = self.ranked(records)
        if not ranked:
            raise DataError(f"every trial failed; see {self.output}/trials/*/log.txt")
        best = ranked[0]
        (self.output / TABLE).write_text(self.table(records))
        (self.output / BEST).write_text(self.best_preset(best))
        self.log(
            f"best of {len(records)} trials: {best['id']} (valid {self.metric} {best['valid'][self.metric]:.4f}); "
            f"wrote {self.output / BEST}"
        )
        return best

    def ranked(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Finished trials, best validation metric first (failed trials left out)."""
        scored = [r for r in records if self.objective(r) is not None]
        sign = -1 if METRICS[self.metric] == "maximize" else 1
        return sorted(scored, key=lambda r: (sign * self.objective(r), r["trial"]))

    def best_preset(self, best: dict[str, Any]) -> str:
        """The best trial's whole config as a preset YAML (the dataset left out, so it applies to any)."""
        cfg = load_config(best["preset"], [*best["overrides"], f"model.name={best['model']}", 'data.dataset=""'])
        header = (
            f"# Tuned by `wukong tune`: {best['id']} of {self.trials} trials ({self.sampler}, seed {self.seed}), "
            f"valid {self.metric} {best['valid'][self.metric]:.4f}.\n"
            f"# Base preset {best['preset']}; searched: {', '.join(p.key for p in self.space.parameters)}.\n"
            f"# Train with: wukong train --config best.yaml --data DATASET --output RUN\n"
        )
        return header + config_to_yaml(cfg)

    def table(self, records: list[dict[str, Any]]) -> str:
        """A Markdown table of every trial, best first, failed trials last."""
        from tabulate import tabulate

        keys = [p.key for p in self.space.parameters]
        ranked = self.ranked(records)
        failed = [r for r in records if self.objective(r) is None]
        rows = []
        for rank, record in enumerate([*ranked, *failed], 1):
            ok = self.objective(record) is not None
            valid = record.get("valid", {})
            rows.append(
                [
                    rank if ok else "failed",
                    record["trial"],
                    *(_short(record["params"].get(k)) for k in keys),
                    f"{valid['auc']:.4f}" if ok else "",
                    f"{valid['logloss']:.4f}" if ok else "",
                    record.get("steps", ""),
                    f"{record['mflops_per_example']:.3g}" if ok else "",
                    f"{record['wall_seconds']:.0f}",
                ]
            )
        table = tabulate(
            rows,
            headers=["rank", "trial", *keys, "valid AUC", "valid LogLoss", "steps", "MFLOP/ex", "time (s)"],
            tablefmt="github",
            disable_numparse=True,
        )
        return (
            f"# Tuning {self.model}\n\n"
            f"{len(records)} trials of `{self.space.source}` on `{self.data}` "
            f"({self.sampler} search, seed {self.seed}, rounds of {self.parallel}); preset `{self.preset}`"
            + (f" with `{' '.join(self.overrides)}`" if self.overrides else "")
            + f"; ranked by validation {self.metric}.\n\n{table}\n"
        )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_table(bests: dict[str, dict[str, Any]], metric: str) -> str:
    """One row per tuned model: its best trial's validation metrics (the same budget for each)."""
    from tabulate import tabulate

    rows = [
        [model, best["id"], f"{best['valid']['auc']:.4f}", f"{best['valid']['logloss']:.4f}", best["steps"], mflops]
        for model, best in bests.items()
        for mflops in [f"{best['mflops_per_example']:.3g}"]
    ]
    headers = ["model", "best trial", "valid AUC", "valid LogLoss", "steps", "MFLOP/ex"]
    return (
        f"# Tuning summary (ranked by validation {metric})\n\n"
        + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
        + "\n"
    )
