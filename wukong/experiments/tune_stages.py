"""A ``wukong tune`` search in two stages, for a pipeline that runs each stage's trials as parallel tasks.

The local tuner (:class:`~wukong.experiments.tune.Tuner`) runs rounds of ``--parallel`` trials, each
drawn knowing every earlier round. A KFP pipeline's graph is fixed when it is compiled, so
``wukong_tuning_pipeline`` runs the same search as two rounds, for every model at once:

1. ``startup_trials`` trials per model, drawn at random (TPE's start-up phase);
2. the other ``trials − startup_trials`` per model, drawn by the sampler told every stage-1 result
   (TPE models them; its *constant liar* keeps one batch's draws apart). TPE stays random until it
   has seen ``n_startup_trials`` *finished* trials, so stage 2 sets that to the stage-1 trials that
   finished: a failed start-up trial must not turn the only model-based stage into random draws.

The draws are the local tuner's own (:meth:`Tuner.plan_round` with rounds of ``startup_trials``): when
every stage-1 trial finishes, ``wukong tune --parallel S --startup-trials S --trials T`` with
``S < T ≤ 2S`` draws the same trials from the same results (more trials are more local rounds).
Trial ids carry the model (``dlrm-trial-0003``), since one loop runs every model's trials; the report
ranks each model's trials on the validation split alone and writes its best preset.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from wukong.config import ConfigError
from wukong.data.errors import DataError
from wukong.experiments.space import SearchSpace
from wukong.experiments.trials import TrialSpec
from wukong.experiments.tune import BEST, JOURNAL, TABLE, Tuner, summary_table

STAGES = (1, 2)


@dataclass(frozen=True)
class TuningReport:
    """What the report step publishes: ``files`` (relative path → text: each model's ``best.yaml``,
    ``trials.md`` and ``trials.jsonl``, and ``summary.md``), the Markdown for the UI, the best records."""

    files: dict[str, str]
    markdown: str
    bests: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class StagedSearch:
    """``trials`` trials of ``space`` per model in two stages (see the module docstring)."""

    data: str
    models: tuple[str, ...]
    space: str  # a YAML path, a name under configs/spaces/, or the YAML text
    trials: int
    startup_trials: int
    seed: int = 0
    sampler: str = "tpe"
    metric: str = "auc"
    preset: str = "default"
    overrides: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: str, models: list, overrides: list, **settings: Any) -> StagedSearch:
        """From a pipeline step's parameters (lists of any items, as KFP passes them)."""
        return cls(data, tuple(str(m) for m in models), overrides=tuple(str(o) for o in overrides), **settings)

    def __post_init__(self) -> None:
        if not self.models or len(set(self.models)) != len(self.models):
            raise ConfigError(f"tuning: give each model once, got {list(self.models)}")
        if not 1 <= self.startup_trials < self.trials:
            raise ConfigError(
                f"tuning pipeline: need 1 <= startup_trials < trials, got startup_trials={self.startup_trials}, "
                f"trials={self.trials} (stage 2 draws the other trials knowing stage 1's results)"
            )
        _ = self._tuners  # every model's space and preset checked (once) before any trial runs

    @cached_property
    def _tuners(self) -> dict[str, Tuner]:
        """Each model's local tuner with the same draws: rounds of ``startup_trials`` (it plans and ranks;
        runs nothing). Building one checks its space at both ends of every range, so it is built once."""
        return {
            model: Tuner(
                self.data,
                model,
                SearchSpace.load(self.space, model),
                Path("."),
                self.trials,
                seed=self.seed,
                sampler=self.sampler,
                metric=self.metric,
                preset=self.preset,
                overrides=list(self.overrides),
                parallel=self.startup_trials,
                startup_trials=self.startup_trials,
            )
            for model in self.models
        }

    def tuner(self, model: str, random_trials: int | None = None) -> Tuner:
        """``model``'s tuner (see :attr:`_tuners`); ``random_trials``: TPE's start-up phase, if not
        ``startup_trials`` (a copy: the shared tuner keeps its own)."""
        tuner = self._tuners[model]
        if random_trials is None:
            return tuner
        tuner = copy.copy(tuner)
        tuner.startup_trials = random_trials
        return tuner

    def plan(self, stage: int, records: Sequence[dict[str, Any]] = ()) -> list[TrialSpec]:
        """Stage ``stage``'s trials of every model; stage 2 is drawn from stage 1's ``records``."""
        if stage not in STAGES:
            raise ConfigError(f"tuning: stage must be 1 or 2, got {stage}")
        startup = self.startup_trials
        first, count = (0, startup) if stage == 1 else (startup, self.trials - startup)
        specs = []
        for model in self.models:
            history = [r for r in records if r["model"] == model]
            if stage == 2 and len(history) != self.startup_trials:
                raise DataError(
                    f"tuning: stage 2 of {model} needs its {self.startup_trials} stage-1 records, got {len(history)}"
                )
            finished = sum(r.get("status") == "ok" for r in history)
            planned = self.tuner(model, finished if stage == 2 else None).plan_round(first, count, history)
            specs += [dataclasses.replace(spec, id=f"{model}-{spec.id}") for spec in planned]
        return specs

    def report(self, records: Sequence[dict[str, Any]]) -> TuningReport:
        """Each model's trials ranked on validation, its table and best preset, and a summary of all.

        Raises:
            DataError: every trial of a model failed.
        """
        files: dict[str, str] = {}
        bests: dict[str, dict[str, Any]] = {}
        tables = []
        for model in self.models:
            tuner = self.tuner(model)
            mine = sorted((r for r in records if r["model"] == model), key=lambda r: r["trial"])
            ranked = tuner.ranked(mine)
            if not ranked:
                errors = {r.get("error", "").strip().splitlines()[-1] for r in mine if r.get("error", "").strip()}
                raise DataError(f"tuning: every trial of {model} failed ({'; '.join(sorted(errors)) or 'no record'})")
            bests[model] = ranked[0]
            table = tuner.table(mine)
            tables.append(table)
            files[f"{model}/{TABLE}"] = table
            files[f"{model}/{BEST}"] = tuner.best_preset(ranked[0])
            files[f"{model}/{JOURNAL}"] = "".join(json.dumps(r, default=str) + "\n" for r in mine)
        summary = summary_table(bests, self.metric)
        files["summary.md"] = summary
        markdown = "\n".join([summary, *(_demote(t) for t in tables)])
        return TuningReport(files, markdown, bests)


def _demote(markdown: str) -> str:
    """A model's table under the summary: its title one level down."""
    return "#" + markdown if markdown.startswith("# ") else markdown
