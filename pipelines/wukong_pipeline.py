"""``wukong_training_pipeline``: warm-start → ingest → train → evaluate → (if AUC ≥ minimum) register and
maybe promote.

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

from kfp import compiler, dsl, kubernetes

from components import evaluate, ingest, register, train, warm_start
from wukong.launch.resources import DEFAULTS_CONFIG_MAP, S3_SECRET  # k8s/base: the Secret template, the ConfigMap

COMPILED = Path(__file__).with_name("wukong_training_pipeline.yaml")


LAUNCH_SETTINGS = (
    "WUKONG_IMAGE",
    "WUKONG_NAMESPACE",
    "WUKONG_JOB_TIMEOUT_S",
    "WUKONG_NODE_SELECTOR",
    "WUKONG_PRIORITY_CLASS",
    "WUKONG_TRAINING_RUNTIME",
    "WUKONG_QUEUE",
)


def _on_cluster(task: dsl.PipelineTask, launches: bool = False) -> dsl.PipelineTask:
    """Credentials from a Secret and the object-store endpoint from a ConfigMap (ignored by kfp.local);
    no caching, so a scheduled run always reads the newest data. The train step (``launches``) also
    gets the job settings of the ConfigMap: image, namespace, wait bound, node selector, runtime, queue."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=S3_SECRET,
        secret_key_to_env={"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"},
    )
    keys = ("AWS_ENDPOINT_URL", *LAUNCH_SETTINGS) if launches else ("AWS_ENDPOINT_URL",)
    kubernetes.use_config_map_as_env(
        task, config_map_name=DEFAULTS_CONFIG_MAP, config_map_key_to_env={key: key for key in keys}
    )
    task.set_caching_options(False)
    return task


@dsl.pipeline(
    name="wukong-training",
    description="Raw logs to WebDataset shards, TorchRec training (warm-started from production if asked), "
    "evaluation, registration with a promotion gate.",
)
def wukong_training_pipeline(
    source: str = "synthetic",
    input_uri: str = "",
    partition: str = "",  # "newest" or a KEY=VALUE folder of input_uri (e.g. date=2026-11-22); "": all of it
    init_from: str = "",  # "production" (cold start while none), a registry version or a model folder; "": cold
    rows: int = 0,  # synthetic: rows to generate (0: 100,000); other sources: read only the first N (0: all)
    seed: int = 0,
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
    base = _on_cluster(warm_start(init_from=init_from, registry_uri=registry_uri, registered_name=registered_name))
    base.set_display_name("warm-start")
    ingested = _on_cluster(
        ingest(
            source=source,
            input_uri=input_uri,
            dataset_uri=dataset_uri,
            rows=rows,
            seed=seed,
            partition=partition,
            extend_vocabulary=base.outputs["folder"],
        )
    )
    ingested.set_display_name("ingest")
    trained = _on_cluster(
        train(
            dataset=ingested.outputs["dataset"],
            model_name=model_name,
            preset=preset,
            overrides=overrides,
            runs_root=runs_root,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            launcher=launcher,
            nodes=nodes,
            nproc_per_node=nproc_per_node,
            gpus_per_node=gpus_per_node,
            init_from=base.outputs["folder"],
        ),
        launches=True,
    )
    trained.set_display_name("train")
    evaluated = _on_cluster(
        evaluate(dataset=ingested.outputs["dataset"], model=trained.outputs["model"], split=eval_split)
    )
    evaluated.set_display_name("evaluate")
    with dsl.If(evaluated.outputs["Output"] >= min_auc, name="auc-above-minimum"):
        registered = _on_cluster(
            register(
                dataset=ingested.outputs["dataset"],
                model=trained.outputs["model"],
                split=eval_split,
                registry_uri=registry_uri,
                registered_name=registered_name,
                min_auc=min_auc,
                tolerance=tolerance,
                pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
        )
        registered.set_display_name("register")
    return trained.outputs["Output"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(wukong_training_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(compile_pipeline())
