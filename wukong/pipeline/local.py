"""``wukong pipeline run --local``: the whole pipeline on this machine with ``kfp.local``.

Every step runs as a subprocess in this Python environment (``SubprocessRunner(use_venv=False)``):
ingest into ``<workdir>/dataset``, train with local torchrun processes (gloo), evaluate, and register
into an embedded registry at ``<workdir>/registry``. Kubernetes-only decorations (secrets, config
maps) are ignored by the local runner.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from wukong.data.manifest import read_manifest
from wukong.evaluate import HEADLINE
from wukong.io import open_storage
from wukong.pipeline.console import Outputs, print_restored, quiet_pipeline, short_path
from wukong.registry import open_registry

__all__ = ["LocalRun", "describe_step", "format_summary", "print_restored", "start_local", "summarize"]


def start_local(pipeline_root: Path) -> None:
    """Make pipeline calls run on this machine: every step a subprocess of this environment."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    # Each step names the project image; locally this environment *is* that image's environment.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image", category=RuntimeWarning)


@dataclass
class LocalRun:
    workdir: Path
    source: str = "synthetic"
    input_uri: str = ""
    partition: str = ""  # newest, or a KEY=VALUE folder of input_uri (wukong.pipeline.partitions); "": all of it
    init_from: str = ""  # production (a cold start while there is none), a registry version or a model folder
    rows: int = 0  # synthetic: rows to generate (0: 100,000); other sources: first N rows (0: all)
    seed: int = 0
    model_name: str = "wukong"
    preset: str = "tiny"
    overrides: list[str] = field(default_factory=list)
    nproc: int = 2
    registered_name: str = "wukong-ctr"
    min_auc: float = 0.6
    tolerance: float = 0.002
    verbose: bool = False  # show the steps' own output (the KFP executor's, training's log) as well

    def log_path(self) -> Path:
        """Where this run's full output goes: ``<workdir>/logs/pipeline-<UTC time>.log``."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        return self.workdir.absolute() / "logs" / f"pipeline-{stamp}.log"

    def run(self, out: TextIO | None = None, log_path: Path | None = None) -> dict[str, Any]:
        """Run every step, one line each on ``out`` (default: stdout) as it finishes, their output in
        ``log_path`` (default: :meth:`log_path`). Raises :class:`StepFailed` when a step fails."""
        from pipelines.wukong_pipeline import wukong_training_pipeline

        workdir = self.workdir.absolute()
        log_path = log_path or self.log_path()
        registry_uri = str(workdir / "registry")
        production_before = open_registry(registry_uri).production(self.registered_name)
        start_local(workdir / "kfp")
        skipped = skip_lines(wukong_training_pipeline)
        with quiet_pipeline(log_path, workdir / "kfp", describe_step, skipped, out, self.verbose):
            task = wukong_training_pipeline(
                source=self.source,
                input_uri=self.input_uri,
                partition=self.partition,
                init_from=self.init_from,
                rows=self.rows,
                seed=self.seed,
                dataset_uri=str(workdir / "dataset"),
                model_name=self.model_name,
                preset=self.preset,
                overrides=self.overrides,
                runs_root=str(workdir / "runs"),
                launcher="local",
                nproc_per_node=self.nproc,
                registry_uri=registry_uri,
                registered_name=self.registered_name,
                min_auc=self.min_auc,
                tolerance=self.tolerance,
            )
        summary = summarize(None, task.output, registry_uri, self.registered_name, production_before)
        return {**summary, "log": str(log_path)}


# What the step lines say about a control-flow task kfp.local skipped, by its display name in the pipeline.
SKIP_LINES = {"auc-above-minimum": "register skipped: test AUC below the minimum (--min-auc)"}


def skip_lines(pipeline) -> dict[str, str]:
    """:data:`SKIP_LINES` by the task names kfp.local logs (``condition-1``: the compiler numbers them)."""
    tasks = pipeline.pipeline_spec.root.dag.tasks
    return {key: SKIP_LINES[task.task_info.name] for key, task in tasks.items() if task.task_info.name in SKIP_LINES}


def describe_step(task: str, outputs: Outputs) -> str:
    """What a finished step of the training pipeline did, in one line, from the outputs it wrote."""
    parameters, artifacts = outputs["parameters"], outputs["artifacts"]
    if task == "warm-start":
        return parameters["label"] if not parameters["folder"] else f"from {parameters['label']}"
    if task == "ingest":
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
    if task == "train":
        model, metrics = artifacts["model"], artifacts.get("metrics", {})
        auc = f", valid AUC {metrics['valid_auc']:.4f}" if "valid_auc" in metrics else ""
        warm = " warm-started," if model.get("init_from") else ""
        return (
            f"{model['model']},{warm} {model['mflops_per_example']:.2f} MFLOP/example, {int(model['steps'])} steps"
            f"{auc} -> {short_path(model['uri'])}"
        )
    if task == "evaluate":
        metrics = artifacts.get("metrics", {})
        return f"test AUC {parameters['Output']:.4f}" + (
            f", LogLoss {metrics['logloss']:.4f}" if "logloss" in metrics else ""
        )
    if task == "register":
        result = json.loads(parameters["Output"])
        if not result["promoted"]:
            return f"{result['name']} version {result['version']} registered, not promoted: {result['reason']}"
        compared, same = result.get("production_auc_compared"), result.get("production_reevaluated")
        versus = f" (production's AUC {compared:.4f} on the same split)" if compared is not None and same else ""
        return f"{result['name']} version {result['version']} registered, promoted to production{versus}"
    values = ", ".join(f"{name} {value}" for name, value in parameters.items())
    return values or "done"


def summarize(dataset_uri: str | None, run_uri: str, registry_uri: str, name: str, production_before) -> dict[str, Any]:
    """The outcome of a run that trained into ``run_uri`` (on ``dataset_uri``; None: the one its card names)."""
    run = open_storage(run_uri)
    card = json.loads(run.read_bytes("model_card.json"))
    dataset_uri = dataset_uri or card["dataset"]["uri"]
    manifest = read_manifest(open_storage(dataset_uri))
    evaluation = json.loads(run.read_bytes("eval-test.json"))
    registry = open_registry(registry_uri)
    # By the model file, not the run: registering is idempotent, so a run that reproduces an earlier
    # model exactly (same data, config and seed) maps to that model's existing version.
    digest = hashlib.sha256(run.read_bytes("model.pt")).hexdigest()
    registered = next((v for v in registry.versions(name) if v.model_sha256 == digest), None)
    production = registry.production(name)
    return {
        "dataset": {
            "uri": dataset_uri,
            "rows": {s: manifest.rows(s) for s in manifest.splits},
            "partition": manifest.partition,
        },
        "warm_start": (card.get("init_from") or {}).get("from"),
        "model": {
            "name": card["model"],
            "mflops_per_example": card["mflops_per_example"],
            "steps": card["steps"],
            "output": run_uri,
        },
        "test": {k: evaluation[k] for k in HEADLINE},
        "production_before": production_before.to_dict() if production_before else None,
        "registered_version": registered.version if registered else None,
        "registered_by_this_run": bool(registered and registered.lineage.get("training_output") == run_uri),
        "production_now": production.version if production else None,
        "report": run.uri("report-test.html"),
    }


def format_summary(summary: dict[str, Any]) -> str:
    before = summary["production_before"]
    test = summary["test"]
    lines = [
        "",
        "pipeline finished",
        f"  dataset     {summary['dataset']['uri']}: "
        + ", ".join(f"{k} {v:,}" for k, v in summary["dataset"]["rows"].items()),
        f"  model       {summary['model']['name']} ({summary['model']['mflops_per_example']:.2f} MFLOP/example, "
        f"{summary['model']['steps']} steps) -> {summary['model']['output']}",
        *([f"  warm start  from {summary['warm_start']}"] if summary.get("warm_start") else []),
        f"  test        AUC {test['auc']:.4f}  LogLoss {test['logloss']:.4f}  NE {test['ne']:.4f}"
        f"  ({test['rows']:,} rows)",
        "  production  "
        + (
            f"was version {before['version']}: AUC {before['metrics'].get('auc', float('nan')):.4f}  "
            f"LogLoss {before['metrics'].get('logloss', float('nan')):.4f}"
            if before
            else "none before this run"
        ),
    ]
    if summary["registered_version"] is None:
        lines.append("  registry    not registered (AUC below the minimum)")
    else:
        version, production = summary["registered_version"], summary["production_now"]
        if not summary["registered_by_this_run"]:
            state = "is production" if production == version else f"production is version {production}"
            lines.append(f"  registry    identical to version {version}, registered by an earlier run ({state})")
        elif production == version:
            lines.append(f"  registry    version {version} registered; promoted to production")
        else:
            lines.append(
                f"  registry    version {version} registered; not promoted (production stays version {production})"
            )
    lines.append(f"  report      {summary['report']}")
    if "log" in summary:
        lines.append(f"  log         {summary['log']}")
    return "\n".join(lines)
