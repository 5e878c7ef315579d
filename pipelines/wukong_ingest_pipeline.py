"""``wukong_ingest_pipeline``: raw data → a dataset, the ingest fanned out over pods.

    ingest-plan ─▶ ParallelFor(group) scan ─▶ offsets ─▶ ParallelFor(group) count ─▶ vocabulary
                ─▶ ParallelFor(group) encode ─▶ ingest-commit (the Dataset artifact)

Each loop runs one task per group of the input's parts (files; 64 MiB ranges of plain-text files),
at most ``tasks`` groups; see :mod:`wukong.pipeline.fanout` for what each step does and how nothing
becomes visible before the commit. :func:`fanned_out_ingest` builds these steps inside any pipeline
(its commit task's ``dataset`` output is what the single ``ingest`` step gives).

Compile with ``make pipeline`` (writes ``pipelines/wukong_ingest_pipeline.yaml``; a test fails when that
file is stale); run on this machine with :func:`run_locally` (kfp.local); submit the YAML with
``wukong pipeline submit --package pipelines/wukong_ingest_pipeline.yaml``.
"""

from pathlib import Path

from kfp import compiler, dsl

from components import ingest_commit, ingest_gather, ingest_parts, ingest_plan
from pipelines.wukong_pipeline import _on_cluster

COMPILED = Path(__file__).with_name("wukong_ingest_pipeline.yaml")
PARALLELISM = 8  # loop tasks at once (KFP needs a constant here; ``tasks`` bounds the groups)


def fanned_out_ingest(source, input_uri, dataset_uri, rows, seed, tasks) -> dsl.PipelineTask:
    """The fanned-out ingest's steps, inside the calling pipeline; returns the commit task."""
    planned = _on_cluster(
        ingest_plan(source=source, input_uri=input_uri, dataset_uri=dataset_uri, rows=rows, seed=seed, tasks=tasks)
    )
    planned.set_display_name("ingest-plan")
    with dsl.ParallelFor(items=planned.output, parallelism=PARALLELISM, name="scan-parts") as group:
        scanned = _on_cluster(ingest_parts(stage="scan", group=group))
        scanned.set_display_name("scan")
    checked = _on_cluster(ingest_gather(stage="offsets", groups=dsl.Collected(scanned.output)))
    checked.set_display_name("offsets")
    with dsl.ParallelFor(items=checked.output, parallelism=PARALLELISM, name="count-parts") as group:
        counted = _on_cluster(ingest_parts(stage="count", group=group))
        counted.set_display_name("count")
    merged = _on_cluster(ingest_gather(stage="vocabulary", groups=dsl.Collected(counted.output)))
    merged.set_display_name("vocabulary")
    with dsl.ParallelFor(items=merged.output, parallelism=PARALLELISM, name="encode-parts") as group:
        encoded = _on_cluster(ingest_parts(stage="encode", group=group))
        encoded.set_display_name("encode")
    committed = _on_cluster(ingest_commit(groups=dsl.Collected(encoded.output)))
    committed.set_display_name("ingest-commit")
    return committed


@dsl.pipeline(
    name="wukong-ingest",
    description="Raw logs to WebDataset shards, read, counted and encoded in parallel over groups of the input's "
    "parts, the vocabulary merged from every part's counts, the manifest committed last.",
)
def wukong_ingest_pipeline(
    source: str = "criteo",
    input_uri: str = "",
    rows: int = 0,  # synthetic: rows to generate (0: 100,000); other sources: read only the first N (0: all)
    seed: int = 0,
    dataset_uri: str = "s3://wukong/datasets/criteo",
    tasks: int = 4,  # groups of parts, each a task in every loop
) -> int:
    committed = fanned_out_ingest(source, input_uri, dataset_uri, rows, seed, tasks)
    return committed.outputs["Output"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(wukong_ingest_pipeline, str(path))
    return path


def run_locally(workdir: Path, **arguments) -> int:
    """Run the pipeline on this machine with kfp.local (the dataset under ``workdir/dataset`` unless
    ``dataset_uri`` is given); returns the training rows. ``arguments`` are the pipeline's parameters."""
    from wukong.pipeline.local import print_restored, start_local

    workdir = workdir.absolute()
    start_local(workdir / "kfp")
    arguments = {"dataset_uri": str(workdir / "dataset"), **arguments}
    with print_restored():
        return wukong_ingest_pipeline(**arguments).output


if __name__ == "__main__":
    print(compile_pipeline())
