"""The four pipeline steps. Each takes and returns plain values, so a KFP component, a test or a
script can call it; none imports KFP."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from wukong.data.errors import DataError
from wukong.headline import HEADLINE
from wukong.io import open_storage
from wukong.registry import Gate, open_registry

LAUNCHERS = ("local", "trainjob", "pytorchjob")


def ingest(source: str, input_uri: str, dataset_uri: str, partition: str = "", **settings: Any) -> dict[str, Any]:
    """Raw data → a published dataset at ``dataset_uri`` (replacing the previous one). Returns its summary.

    ``partition``: ``newest`` or a ``KEY=VALUE`` folder of ``input_uri`` to read alone, published at
    ``<dataset_uri>/KEY=VALUE`` (:mod:`wukong.pipeline.partitions`); empty: the whole input.
    ``settings``: the other fields of :class:`wukong.pipeline.ingest.Ingest`: ``rows`` (synthetic: rows to
    generate, 0: 100,000; others: the first rows to read, 0: all), ``seed``, ``shard_rows``,
    ``extend_vocabulary`` (a model or dataset folder whose vocabulary ids to keep: a warm start's),
    ``split_by`` (``ratio``: 80/10/10 by a seeded hash of each row's id; ``time``: the oldest 80% of
    rows train, the newest 10% test, by the source's time column)."""
    from wukong.data.prepare import prepare
    from wukong.malloc import configure_malloc
    from wukong.pipeline.ingest import Ingest

    configure_malloc("retain")  # the step's process (a pod) keeps freed memory for reuse, as `data prepare` does
    request = Ingest.of(source, input_uri, dataset_uri, partition, **settings)
    return request.summary(prepare(request.open(), request.dataset_uri, request.options()))


def warm_start(init_from: str, registry_uri: str, registered_name: str) -> dict[str, str]:
    """The model a run starts from: ``folder`` ('' for a cold start) and ``label`` (how it is named).

    ``init_from``: empty (cold start); ``production`` (the registry's production version of
    ``registered_name``, a cold start when there is none yet); another registry version (``3``,
    ``NAME:VERSION``) or a model folder, which must exist."""
    from wukong.registry import PRODUCTION
    from wukong.serve.locate import locate

    if not init_from:
        return {"folder": "", "label": "cold start (init_from not set)"}
    if init_from == PRODUCTION and open_registry(registry_uri).production(registered_name) is None:
        return {"folder": "", "label": f"cold start (no {registered_name} in production yet)"}
    located = locate(init_from, registry_uri, registered_name, flag="init_from")
    return {"folder": located.folder, "label": located.describe()}


def run_folder(runs_root: str, *names: str) -> str:
    """Where a pipeline run's training writes: ``<runs_root>/<name>/...`` (the run id, a sweep point's id)."""
    return "/".join([runs_root.rstrip("/"), *names])


def train(
    dataset_uri: str,
    output_uri: str,
    model_name: str,
    preset: str,
    overrides: list[str] | None = None,
    launcher: str = "local",
    nproc_per_node: int = 2,
    nodes: int = 1,
    gpus_per_node: int = 0,
    init_from: str = "",
) -> dict[str, Any]:
    """Train ``model_name`` and return its model card. ``launcher``: ``local`` runs torchrun inside this
    process's machine; ``trainjob`` submits a multi-node Kubeflow Trainer v2 TrainJob, ``pytorchjob`` a
    training-operator v1 PyTorchJob (see :mod:`wukong.launch`). ``init_from``: a model folder to
    warm-start from (``wukong train --init-from``), empty for a cold start."""
    if launcher not in LAUNCHERS:
        raise DataError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    args = ["--data", dataset_uri, "--output", output_uri, "--config", preset, "--model", model_name]
    args += ["--init-from", init_from] if init_from else []
    args += [item for override in overrides or [] for item in ("--set", override)]
    if launcher != "local":
        from wukong.launch import launch_training

        launch_training(launcher, args, nodes=nodes, nproc_per_node=nproc_per_node, gpus_per_node=gpus_per_node)
    else:
        command = [sys.executable, "-m", "wukong", "train", "--nproc", str(nproc_per_node), *args]
        result = subprocess.run(command)
        if result.returncode:
            raise RuntimeError(f"training failed (exit code {result.returncode}); see the log above")
    return json.loads(open_storage(output_uri).read_bytes("model_card.json"))


def evaluate(model_uri: str, dataset_uri: str, split: str = "test") -> dict[str, Any]:
    """Metrics (and curves) of the trained model on ``split``; also written to ``<model_uri>/eval-<split>.json``."""
    from wukong.evaluate import evaluate_model

    result = evaluate_model(model_uri, dataset_uri, split)
    open_storage(model_uri).write_bytes(f"eval-{split}.json", json.dumps(result, indent=1).encode())
    return result


def register(
    model_uri: str,
    metrics: dict[str, Any],
    registry_uri: str,
    registered_name: str,
    min_auc: float,
    tolerance: float,
    lineage: dict[str, Any] | None = None,
    dataset_uri: str | None = None,
    split: str = "test",
    export: bool = True,
) -> dict[str, Any]:
    """Export the model (``wukong export``, unless ``export`` is False), register it with its metrics,
    lineage and export; promote it if it passes the gate.

    With ``dataset_uri``, the production model is re-evaluated on the same split the candidate was
    evaluated on, so the gate compares like with like when the data has changed since production
    was registered; if it cannot be (its features differ from the new data's), its stored metrics
    are used and the reason says so.
    """
    if export:
        from wukong.serve.artifact import export_artifact

        export_artifact(model_uri)  # <model_uri>/export: the servable program, registered with the version
    registry = open_registry(registry_uri)
    production = registry.production(registered_name)
    headline = {k: metrics[k] for k in HEADLINE if k in metrics}
    version = registry.register(registered_name, model_uri, headline, lineage)
    baseline, basis = (production.metrics if production else None), "its registered metrics"
    if production and dataset_uri and production.version != version.version:
        try:
            from wukong.evaluate import evaluate_model

            baseline, basis = evaluate_model(production.uri, dataset_uri, split), f"re-evaluated on this {split} split"
        except DataError as error:
            basis = f"its registered metrics (cannot re-evaluate: {error})"
    promote, reason = Gate(min_auc, tolerance).check(headline, baseline)
    if production:
        reason += f"; production version {production.version}: {basis}"
    if promote:
        registry.promote(registered_name, version.version)
    return {
        "name": registered_name,
        "version": version.version,
        "uri": version.uri,
        "promoted": promote,
        "reason": reason,
        "production_before": production.to_dict() if production else None,
        "production_auc_compared": baseline.get("auc") if baseline else None,
        "production_reevaluated": bool(production) and basis.startswith("re-evaluated"),
    }
