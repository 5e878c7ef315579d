"""``wukong_ingest_pipeline``: raw data → a dataset, the ingest fanned out over pods.

    ingest-plan ─▶ ParallelFor(group) scan ─▶ offsets ─▶ ParallelFor(group) count ─▶ vocabulary
                ─▶ ParallelFor(group) encode ─▶ ingest-commit (the Dataset artifact)

Each loop runs one task per group of the input's parts (files; 64 MiB ranges of plain-text files),
at most ``tasks`` groups; see :mod:`wukong.pipeline.fanout` for what each step does and how nothing
becomes visible before the commit. The steps are :func:`pipelines.graph.fanned_out_ingest`, which the
training pipeline builds too (its ``ingest_tasks`` parameter).

Compile with ``make pipeline`` (writes ``pipelines/wukong_ingest_pipeline.yaml``; a test fails when that
file is stale); run on this machine with :func:`run_locally` (kfp.local); submit the YAML with
``wukong pipeline submit --package pipelines/wukong_ingest_pipeline.yaml``.
"""

from pathlib import Path

from kfp import compiler, dsl

from pipelines.graph import PARALLELISM, fanned_out_ingest

__all__ = ["COMPILED", "PARALLELISM", "compile_pipeline", "run_locally", "wukong_ingest_pipeline"]

COMPILED = Path(__file__).with_name("wukong_ingest_pipeline.yaml")


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
    committed = fanned_out_ingest(
        tasks, source=source, input_uri=input_uri, dataset_uri=dataset_uri, rows=rows, seed=seed
    )
    return committed.outputs["Output"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(wukong_ingest_pipeline, str(path))
    return path


def run_locally(workdir: Path, **arguments) -> int:
    """Run the pipeline on this machine with kfp.local (the dataset under ``workdir/dataset`` unless
    ``dataset_uri`` is given); returns the training rows. ``arguments`` are the pipeline's parameters."""
    from wukong.pipeline.local import run_pipeline

    return run_pipeline(wukong_ingest_pipeline, workdir, arguments, dataset_uri="dataset")


if __name__ == "__main__":
    print(compile_pipeline())
