"""One line per finished step of a local training-pipeline run, from the outputs the step wrote
(its parameters and its artifacts' metadata, :data:`wukong.pipeline.console.Outputs`).

A step is named by its display name in the pipeline: ``warm-start``, ``ingest`` or the fanned-out
ingest's ``ingest-plan``, ``scan`` (one line per task), ``offsets``, ``count``, ``vocabulary``,
``encode`` and ``ingest-commit`` (:mod:`wukong.pipeline.fanout`), then ``train``, ``evaluate``,
``register``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from wukong.pipeline.console import Outputs, short_path


def _warm_start(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    return parameters["label"] if not parameters["folder"] else f"from {parameters['label']}"


def _dataset(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    """The published dataset (``ingest``, ``ingest-commit``)."""
    dataset = artifacts["dataset"]
    rows = " · ".join(f"{split} {int(n):,}" for split, n in dataset["rows"].items())
    features = dataset.get("features", {})
    rejected = int(dataset.get("rows_rejected", 0))
    added = dataset.get("vocabulary_added")
    return (
        (f"partition {dataset['partition']}: " if dataset.get("partition") else "")
        + f"{rows} rows, {int(features.get('dense', 0))} dense + {int(features.get('sparse', 0))} sparse features"
        + (f", {rejected:,} rejected" if rejected else "")
        + (f", vocabulary extended by {int(added):,} new values" if added is not None else "")
        + f" -> {short_path(dataset['uri'])}"
    )


def _specs(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The task specs a fan-out step returned (a list of them, or one)."""
    found = parameters["Output"]
    return [json.loads(spec) for spec in (found if isinstance(found, list) else [found])]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _plan(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    specs = _specs(parameters)
    size = sum(s["bytes"] for s in specs)
    parts = _plural(sum(s["parts"] for s in specs), "part") + (f" ({size / 1e6:,.1f} MB)" if size else "")
    where = short_path(specs[0]["dataset_uri"])
    return f"{parts} in {_plural(len(specs), 'group')}, one task each per stage -> {where}"


def _task(parameters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A loop task's group (``group 2 of 3``) and what it did."""
    spec = _specs(parameters)[0]
    return f"group {spec['group'] + 1} of {spec['groups']}", spec["done"]


def _scan(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    group, done = _task(parameters)
    rejected = f", {done['rejected']:,} rejected" if done["rejected"] else ""
    return f"{group}: {_plural(done['parts'], 'part')}, {done['rows']:,} rows{rejected}"


def _offsets(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    done = [s["done"] for s in _specs(parameters)]
    rows, rejected = sum(d["rows"] for d in done), sum(d["rejected"] for d in done)
    return f"{rows:,} rows in {_plural(len(done), 'group')}, {rejected:,} rejected (within the limit); row ids fixed"


def _count(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    group, done = _task(parameters)
    return f"{group}: {done['rows']:,} rows split, vocabularies counted on their {done['train']:,} training rows"


def _vocabulary(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    done = [s["done"] for s in _specs(parameters)]
    train = sum(d["train"] for d in done)
    return f"the counts of {_plural(len(done), 'group')} merged: vocabularies and statistics of {train:,} training rows"


def _encode(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    group, done = _task(parameters)
    return f"{group}: {done['rows']:,} rows in {_plural(done['shards'], 'shard')}"


def _train(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    model, metrics = artifacts["model"], artifacts.get("metrics", {})
    auc = f", valid AUC {metrics['valid_auc']:.4f}" if "valid_auc" in metrics else ""
    warm = " warm-started," if model.get("init_from") else ""
    return (
        f"{model['model']},{warm} {model['mflops_per_example']:.2f} MFLOP/example, {int(model['steps'])} steps"
        f"{auc} -> {short_path(model['uri'])}"
    )


def _evaluate(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    metrics = artifacts.get("metrics", {})
    logloss = f", LogLoss {metrics['logloss']:.4f}" if "logloss" in metrics else ""
    return f"test AUC {parameters['Output']:.4f}{logloss}"


def _register(parameters: dict[str, Any], artifacts: dict[str, Any]) -> str:
    result = json.loads(parameters["Output"])
    if not result["promoted"]:
        return f"{result['name']} version {result['version']} registered, not promoted: {result['reason']}"
    compared, same = result.get("production_auc_compared"), result.get("production_reevaluated")
    versus = f" (production's AUC {compared:.4f} on the same split)" if compared is not None and same else ""
    return f"{result['name']} version {result['version']} registered, promoted to production{versus}"


LINES: dict[str, Callable[[dict[str, Any], dict[str, Any]], str]] = {
    "warm-start": _warm_start,
    "ingest": _dataset,
    "ingest-plan": _plan,
    "scan": _scan,
    "offsets": _offsets,
    "count": _count,
    "vocabulary": _vocabulary,
    "encode": _encode,
    "ingest-commit": _dataset,
    "train": _train,
    "evaluate": _evaluate,
    "register": _register,
}


def describe_step(step: str, outputs: Outputs) -> str:
    """What a finished step of the training pipeline did, in one line, from the outputs it wrote."""
    parameters, artifacts = outputs["parameters"], outputs["artifacts"]
    if step in LINES:
        return LINES[step](parameters, artifacts)
    return ", ".join(f"{name} {value}" for name, value in parameters.items()) or "done"
