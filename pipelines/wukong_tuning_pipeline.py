"""``wukong_tuning_pipeline``: the same search budget for every model, its trials trained in parallel.

    ingest ─▶ tune-plan-1 ─▶ ParallelFor(trial) ─▶ tune-trial-1 ─┐ Collected
          ─▶ tune-plan-2 ─▶ ParallelFor(trial) ─▶ tune-trial-2 ─┴─▶ tune-report (best presets, tables)

The search is ``wukong tune``'s (:mod:`wukong.experiments.tune_stages`): per model, ``startup_trials``
random trials, then the other ``trials − startup_trials`` drawn by the sampler (TPE) knowing them.
Every trial trains on the training split and is ranked on the validation split only; a trial that
fails with an error is recorded as failed and the search goes on (a task killed from outside, e.g.
out of memory, fails the run as any step does). The report step's ``tuned`` artifact holds each
model's ``best.yaml`` (a preset for ``wukong train --config``) with its ``trials.md`` and
``trials.jsonl``; its Markdown shows every trial in the Kubeflow UI.

``space`` names a search space the image ships (``recipe``: ``configs/spaces/recipe.yaml``), a path in
the image, or is the space's YAML text: ``--param space="$(cat my-space.yaml)"``.

Compile with ``make pipeline`` (writes ``pipelines/wukong_tuning_pipeline.yaml``; a test fails when
that file is stale); run on this machine with :func:`run_locally` (kfp.local); submit the YAML with
``wukong pipeline submit --package pipelines/wukong_tuning_pipeline.yaml``.
"""

from pathlib import Path

from kfp import compiler, dsl

from components import ingest, train_trial, tune_plan, tune_report
from pipelines.graph import launching, named

COMPILED = Path(__file__).with_name("wukong_tuning_pipeline.yaml")
PARALLELISM = 4  # trials trained at once (KFP needs a constant here)


@dsl.pipeline(
    name="wukong-tuning",
    description="Hyper-parameter search with the same trial budget for every model: random start-up trials, "
    "then TPE trials knowing them, each trained in parallel and ranked on the validation split; the best "
    "config of each model as a preset.",
)
def wukong_tuning_pipeline(
    source: str = "movielens",
    input_uri: str = "",
    rows: int = 0,  # synthetic/teacher: rows to generate; other sources: read only the first N (0: all)
    seed: int = 0,  # the data's (split, generated rows)
    dataset_uri: str = "s3://wukong/datasets/tuning",
    models: list = ["wukong", "dlrm", "dcnv2", "finalmlp"],  # noqa: B006 (KFP parameters are declared by their defaults)
    space: str = "recipe",
    trials: int = 12,  # per model
    startup_trials: int = 6,  # per model, drawn at random first
    sampler: str = "tpe",
    search_seed: int = 0,  # seeds the sampler and every trial's training
    metric: str = "auc",
    preset: str = "movielens",
    overrides: list = [],  # noqa: B006
    runs_root: str = "s3://wukong/tuning",
    launcher: str = "local",
    nodes: int = 1,
    nproc_per_node: int = 1,
    gpus_per_node: int = 0,
) -> str:
    ingested = named(
        ingest(source=source, input_uri=input_uri, dataset_uri=dataset_uri, rows=rows, seed=seed), "ingest"
    )
    dataset = ingested.outputs["dataset"]
    search = dict(
        models=models,
        space=space,
        trials=trials,
        startup_trials=startup_trials,
        sampler=sampler,
        seed=search_seed,
        metric=metric,
        preset=preset,
        overrides=overrides,
    )
    launch = launching(runs_root, launcher, nodes, nproc_per_node, gpus_per_node)

    def stage(number: int, records) -> dsl.PipelineTask:
        planned = named(tune_plan(dataset=dataset, stage=number, records=records, **search), f"tune-plan-{number}")
        with dsl.ParallelFor(items=planned.output, parallelism=PARALLELISM, name=f"stage-{number}-trials") as trial:
            return named(
                train_trial(dataset=dataset, trial=trial, keep_failures=True, **launch),
                f"tune-trial-{number}",
                launches=True,
            )

    first = stage(1, [])
    second = stage(2, dsl.Collected(first.outputs["Output"]))
    # one dsl.Collected per consumer: KFP 2.17 cannot compile one Collected channel fed to two tasks
    records = {"first": dsl.Collected(first.outputs["Output"]), "second": dsl.Collected(second.outputs["Output"])}
    reported = named(tune_report(dataset=dataset, **records, **search), "tune-report")
    return reported.outputs["Output"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(wukong_tuning_pipeline, str(path))
    return path


def run_locally(workdir: Path, **arguments) -> str:
    """Run the pipeline on this machine with kfp.local (dataset and runs under ``workdir``); returns each
    model's best trial as JSON. ``arguments`` are the pipeline's parameters."""
    from wukong.pipeline.local import run_pipeline

    return run_pipeline(wukong_tuning_pipeline, workdir, arguments, dataset_uri="dataset", runs_root="runs")


if __name__ == "__main__":
    print(compile_pipeline())
