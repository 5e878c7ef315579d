"""Pieces of pipeline graphs that several pipelines build: the cluster decorations every task gets, and
the fanned-out ingest (:mod:`wukong.pipeline.fanout`)::

    ingest-plan ─▶ ParallelFor(group) scan ─▶ offsets ─▶ ParallelFor(group) count ─▶ vocabulary
                ─▶ ParallelFor(group) encode ─▶ ingest-commit (the Dataset artifact)

Each loop runs one task per group of the input's parts (files; 64 MiB ranges of plain-text files),
at most ``tasks`` groups. The commit task's ``dataset`` output is what the single ``ingest`` step's is.
"""

from kfp import dsl, kubernetes

from components import ingest_commit, ingest_gather, ingest_parts, ingest_plan
from wukong.launch.resources import DEFAULTS_CONFIG_MAP, S3_SECRET  # k8s/base: the Secret template, the ConfigMap

PARALLELISM = 8  # ingest loop tasks at once (KFP needs a constant here; ``tasks`` bounds the groups)

LAUNCH_SETTINGS = (
    "WUKONG_IMAGE",
    "WUKONG_NAMESPACE",
    "WUKONG_JOB_TIMEOUT_S",
    "WUKONG_NODE_SELECTOR",
    "WUKONG_PRIORITY_CLASS",
    "WUKONG_TRAINING_RUNTIME",
    "WUKONG_QUEUE",
)


def on_cluster(task: dsl.PipelineTask, launches: bool = False) -> dsl.PipelineTask:
    """Credentials from a Secret and the object-store endpoint from a ConfigMap (ignored by kfp.local);
    no caching, so a scheduled run always reads the newest data. A step that ``launches`` training jobs
    also gets the job settings of the ConfigMap: image, namespace, wait bound, node selector, runtime, queue."""
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


def named(task: dsl.PipelineTask, name: str, launches: bool = False) -> dsl.PipelineTask:
    """``task`` decorated :func:`on_cluster`, shown as ``name`` (in the UI and a local run's step lines)."""
    return on_cluster(task, launches).set_display_name(name)


def launching(runs_root, launcher, nodes, nproc_per_node, gpus_per_node) -> dict:
    """The arguments of a step that trains (``train``, ``train_trial``): its runs go under
    ``<runs_root>/<pipeline run id>``, launched as ``launcher`` says on that many nodes and processes."""
    return {
        "runs_root": runs_root,
        "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        "launcher": launcher,
        "nodes": nodes,
        "nproc_per_node": nproc_per_node,
        "gpus_per_node": gpus_per_node,
    }


def _loop(stage: str, items, name: str) -> dsl.PipelineTask:
    """One task of ``stage`` per item (a group's spec), in a ParallelFor called ``name``."""
    with dsl.ParallelFor(items=items, parallelism=PARALLELISM, name=name) as group:
        return named(ingest_parts(stage=stage, group=group), stage)


def fanned_out_ingest(tasks, **ingest) -> dsl.PipelineTask:
    """The fanned-out ingest's steps, inside the calling pipeline; returns the commit task. ``tasks`` and
    ``ingest`` (the ``ingest`` component's arguments: source, input_uri, dataset_uri, rows, seed and
    optionally partition, extend_vocabulary, split_by) are constants or the pipeline's channels."""
    planned = named(ingest_plan(tasks=tasks, **ingest), "ingest-plan")
    scanned = _loop("scan", planned.output, "scan-parts")
    checked = named(ingest_gather(stage="offsets", groups=dsl.Collected(scanned.output)), "offsets")
    counted = _loop("count", checked.output, "count-parts")
    merged = named(ingest_gather(stage="vocabulary", groups=dsl.Collected(counted.output)), "vocabulary")
    encoded = _loop("encode", merged.output, "encode-parts")
    return named(ingest_commit(groups=dsl.Collected(encoded.output)), "ingest-commit")
