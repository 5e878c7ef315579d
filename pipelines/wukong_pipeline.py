"""``wukong_training_pipeline``: warm-start → ingest → train → evaluate → (if AUC ≥ minimum) register and
maybe promote.

The ingest is one step, or with ``ingest_tasks=N`` (N ≥ 1) fanned out over pods
(:func:`pipelines.graph.fanned_out_ingest`: plan, ParallelFor loops of at most N tasks, the
vocabulary merged from every task's counts, the manifest committed last); both publish the same
dataset (rows, ids, splits; only shard boundaries differ) and hand the same ``Dataset`` artifact on.

A recurring (daily) run sets ``partition=newest`` and ``init_from=production``: it prepares the newest
``KEY=VALUE`` partition of ``input_uri`` into ``<dataset_uri>/KEY=VALUE``, extending the vocabulary of
the model in production, trains warm-started from that model (a cold start while there is none), and
the register step's gate compares the new model with production re-evaluated on the same held-out
test split of the newest partition.

Compile with ``make pipeline`` (writes ``pipelines/wukong_training_pipeline.yaml``; a test fails when
that file is stale). Run locally with ``wukong pipeline run --local``; on a cluster with
``wukong pipeline submit`` or ``schedule``.
"""

from pathlib import Path

from kfp import compiler, dsl

from components import evaluate, ingest, register, train, warm_start
from pipelines.graph import fanned_out_ingest, launching, named

COMPILED = Path(__file__).with_name("wukong_training_pipeline.yaml")


@dsl.pipeline(
    name="wukong-training",
    description="Raw logs to WebDataset shards (in one step, or fanned out over pods), TorchRec training "
    "(warm-started from production if asked), evaluation, registration with a promotion gate.",
)
def wukong_training_pipeline(
    source: str = "synthetic",
    input_uri: str = "",
    partition: str = "",  # "newest" or a KEY=VALUE folder of input_uri (e.g. date=2026-11-22); "": all of it
    init_from: str = "",  # "production" (cold start while none), a registry version or a model folder; "": cold
    rows: int = 0,  # synthetic: rows to generate (0: 100,000); other sources: read only the first N (0: all)
    seed: int = 0,
    split_by: str = "ratio",  # or "time" (one ingest step only)
    ingest_tasks: int = 0,  # 0: one ingest step; N >= 1: the ingest fanned out over at most N tasks per stage
    dataset_uri: str = "s3://wukong/datasets/synthetic",
    model_name: str = "wukong",
    preset: str = "default",
    overrides: list = [],  # noqa: B006 (KFP pipeline parameters are declared by their defaults)
    runs_root: str = "s3://wukong/runs",
    launcher: str = "local",
    nodes: int = 1,
    nproc_per_node: int = 2,
    gpus_per_node: int = 0,
    eval_split: str = "test",
    registry_uri: str = "s3://wukong/registry",
    registered_name: str = "wukong-ctr",
    min_auc: float = 0.7,
    tolerance: float = 0.002,
) -> str:
    base = named(
        warm_start(init_from=init_from, registry_uri=registry_uri, registered_name=registered_name), "warm-start"
    )
    ingest_args = dict(source=source, input_uri=input_uri, dataset_uri=dataset_uri, rows=rows, seed=seed)
    ingest_args.update(partition=partition, split_by=split_by, extend_vocabulary=base.outputs["folder"])

    def train_evaluate_register(dataset) -> dsl.PipelineTask:
        """The steps after the ingest, on its ``Dataset``; returns the train task."""
        trained = named(
            train(
                dataset=dataset,
                model_name=model_name,
                preset=preset,
                overrides=overrides,
                init_from=base.outputs["folder"],
                **launching(runs_root, launcher, nodes, nproc_per_node, gpus_per_node),
            ),
            "train",
            launches=True,
        )
        evaluated = named(evaluate(dataset=dataset, model=trained.outputs["model"], split=eval_split), "evaluate")
        with dsl.If(evaluated.outputs["Output"] >= min_auc, name="auc-above-minimum"):
            named(
                register(
                    dataset=dataset,
                    model=trained.outputs["model"],
                    split=eval_split,
                    registry_uri=registry_uri,
                    registered_name=registered_name,
                    min_auc=min_auc,
                    tolerance=tolerance,
                    pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                "register",
            )
        return trained

    # The later steps sit in both branches, each on its branch's Dataset: kfp.local (2.17) cannot pass
    # an artifact out of a dsl.If through dsl.OneOf (parameters it can: the run's output below).
    with dsl.If(ingest_tasks > 0, name="fanned-out-ingest"):
        committed = fanned_out_ingest(ingest_tasks, **ingest_args)
        fanned_out = train_evaluate_register(committed.outputs["dataset"])
    with dsl.Else(name="one-ingest-step"):
        ingested = named(ingest(**ingest_args), "ingest")
        one_step = train_evaluate_register(ingested.outputs["dataset"])
    return dsl.OneOf(fanned_out.outputs["Output"], one_step.outputs["Output"])


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(wukong_training_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(compile_pipeline())
