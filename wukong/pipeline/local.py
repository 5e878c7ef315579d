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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.headline import HEADLINE
from wukong.io import open_storage
from wukong.pipeline.console import print_restored, quiet_pipeline
from wukong.pipeline.steplines import describe_step
from wukong.registry import open_registry

__all__ = [
    "LocalRun",
    "describe_step",
    "format_summary",
    "print_restored",
    "run_pipeline",
    "start_local",
    "step_names",
    "summarize",
]


def start_local(pipeline_root: Path) -> None:
    """Make pipeline calls run on this machine: every step a subprocess of this environment."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    # Each step names the project image; locally this environment *is* that image's environment.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image", category=RuntimeWarning)
    # Display names are what the step lines show (wukong.pipeline.console); kfp.local warns that it ignores them.
    warnings.filterwarnings("ignore", message=r".*settings \['display_name'\] have no effect", category=UserWarning)


def run_pipeline(pipeline, workdir: Path, arguments: dict[str, Any], **folders: str) -> Any:
    """Run ``pipeline`` on this machine with kfp.local (pipeline root ``<workdir>/kfp``); returns its output.
    ``arguments`` are its parameters; ``folders`` name parameters that default to a folder of ``workdir``
    (``dataset_uri="dataset"``: ``<workdir>/dataset`` unless ``arguments`` give it)."""
    workdir = workdir.absolute()
    start_local(workdir / "kfp")
    defaults = {name: str(workdir / folder) for name, folder in folders.items()}
    with print_restored():
        return pipeline(**{**defaults, **arguments}).output


@dataclass
class LocalRun:
    workdir: Path
    source: str = "synthetic"
    input_uri: str = ""
    partition: str = ""  # newest, or a KEY=VALUE folder of input_uri (wukong.pipeline.partitions); "": all of it
    init_from: str = ""  # production (a cold start while there is none), a registry version or a model folder
    rows: int = 0  # synthetic: rows to generate (0: 100,000); other sources: first N rows (0: all)
    seed: int = 0
    split_by: str = "ratio"  # or time (one ingest step only)
    ingest_tasks: int = 0  # 0: one ingest step; N >= 1: the ingest fanned out over at most N tasks per stage
    model_name: str = "wukong"
    preset: str = "tiny"
    overrides: list[str] = field(default_factory=list)
    nproc: int = 2
    registered_name: str = "wukong-ctr"
    min_auc: float = 0.6
    tolerance: float = 0.002
    verbose: bool = False  # show the steps' own output (the KFP executor's, training's log) as well

    def __post_init__(self) -> None:
        """Refuse what the pipeline would refuse, before any step runs."""
        from wukong.pipeline.ingest import check_fanned_out

        if self.ingest_tasks < 0:
            raise DataError(f"--ingest-tasks must be >= 0 (0: one ingest step), got {self.ingest_tasks}")
        if self.ingest_tasks:
            check_fanned_out(self.split_by)

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
        skipped, names = skip_lines(wukong_training_pipeline), step_names(wukong_training_pipeline)
        with quiet_pipeline(log_path, workdir / "kfp", describe_step, skipped, out, self.verbose, names):
            task = wukong_training_pipeline(
                source=self.source,
                input_uri=self.input_uri,
                partition=self.partition,
                init_from=self.init_from,
                rows=self.rows,
                seed=self.seed,
                split_by=self.split_by,
                ingest_tasks=self.ingest_tasks,
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


def _tasks(pipeline) -> Iterator[tuple[str, Any]]:
    """Every task of the compiled ``pipeline`` (its key and spec), in its root DAG and every nested one
    (the bodies of conditions and loops)."""
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.WhichOneof("implementation") == "dag")]
    for dag in dags:
        yield from dag.tasks.items()


def skip_lines(pipeline) -> dict[str, str]:
    """:data:`SKIP_LINES` by the task names kfp.local logs (``condition-1``: the compiler numbers them)."""
    return {key: SKIP_LINES[task.task_info.name] for key, task in _tasks(pipeline) if task.task_info.name in SKIP_LINES}


def step_names(pipeline) -> dict[str, str]:
    """The steps' display names by the task names kfp.local logs: their components' names
    (``ingest-parts-2`` -> ``count``, ``train-2`` -> ``train``)."""
    return {task.component_ref.name.removeprefix("comp-"): task.task_info.name for _, task in _tasks(pipeline)}


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
