"""``wukong_scaling_pipeline``: ingest once → train every sweep point in parallel → fit and plot the laws.

    ingest ─▶ sweep-plan ─▶ ParallelFor(point) ─▶ sweep-point (train + evaluate; a PyTorchJob on a cluster)
                                                   └─ Collected ─▶ sweep-report (HTML + Markdown in the UI)

The points are those of ``wukong sweep`` (:class:`wukong.experiments.sweep.Sweep`): each model family
upscaled to log-spaced MFLOP/example targets, every point one pass over the same training rows. The
report step's HTML (figures with the fitted ``L∞ + A·C^−α`` per family) and Markdown (the laws and
the points) show in the Kubeflow UI; its ``sweep`` artifact holds the records as JSONL.

Compile with ``make pipeline`` (writes ``pipelines/wukong_scaling_pipeline.yaml``; a test fails when
that file is stale); run on this machine with :func:`run_locally` (kfp.local); submit the YAML with
``wukong pipeline submit --package pipelines/wukong_scaling_pipeline.yaml``.
"""

from pathlib import Path

from kfp import compiler, dsl

from components import ingest, sweep_plan, sweep_report, train_trial
from pipelines.graph import launching, named

COMPILED = Path(__file__).with_name("wukong_scaling_pipeline.yaml")
PARALLELISM = 4  # sweep points trained at once (KFP needs a constant here)


@dsl.pipeline(
    name="wukong-scaling",
    description="Scaling-law sweep: every model family upscaled over a FLOP range on one data budget, "
    "trained in parallel, with a power law fitted per family and plotted against compute.",
)
def wukong_scaling_pipeline(
    source: str = "teacher",
    input_uri: str = "",
    rows: int = 0,  # teacher: rows to generate (0: 1,000,000); other sources: read only the first N (0: all)
    seed: int = 0,
    cardinality: int = 0,  # teacher: the largest ids per field (0: 2,000); docs/scaling.md's learnable ids: 200
    teacher: dict = {},  # noqa: B006 (the teacher's shape by TeacherConfig field: {"order": 4, ...})
    dataset_uri: str = "s3://wukong/datasets/scaling",
    models: list = ["wukong", "dlrm", "dcnv2"],  # noqa: B006 (KFP pipeline parameters are declared by their defaults)
    mflops: str = "0.03:10",
    points: int = 5,
    seeds: int = 1,
    end_seeds: int = 2,  # seeds at each family's smallest and largest point
    train_rows: int = 0,  # training rows every point sees once (0: the whole training split)
    preset: str = "default",
    overrides: list = [],  # noqa: B006
    grid: list = [],  # noqa: B006 ("KEY=V1,V2": every point at each value, its best on validation reported)
    runs_root: str = "s3://wukong/sweeps",
    launcher: str = "local",
    nodes: int = 1,
    nproc_per_node: int = 1,
    gpus_per_node: int = 0,
    split: str = "test",
) -> str:
    ingested = named(
        ingest(
            source=source,
            input_uri=input_uri,
            dataset_uri=dataset_uri,
            rows=rows,
            seed=seed,
            cardinality=cardinality,
            teacher=teacher,
        ),
        "ingest",
    )
    planned = named(
        sweep_plan(
            dataset=ingested.outputs["dataset"],
            models=models,
            mflops=mflops,
            points=points,
            seeds=seeds,
            end_seeds=end_seeds,
            train_rows=train_rows,
            preset=preset,
            overrides=overrides,
            grid=grid,
        ),
        "sweep-plan",
    )
    with dsl.ParallelFor(items=planned.output, parallelism=PARALLELISM, name="sweep-points") as trial:
        point = named(
            train_trial(
                dataset=ingested.outputs["dataset"],
                trial=trial,
                keep_failures=False,
                **launching(runs_root, launcher, nodes, nproc_per_node, gpus_per_node),
            ),
            "sweep-point",
            launches=True,
        )
    reported = named(sweep_report(records=dsl.Collected(point.outputs["Output"]), split=split), "sweep-report")
    return reported.outputs["Output"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(wukong_scaling_pipeline, str(path))
    return path


def run_locally(workdir: Path, **arguments) -> str:
    """Run the pipeline on this machine with kfp.local (dataset and runs under ``workdir``); returns the
    fitted laws as JSON. ``arguments`` are the pipeline's parameters."""
    from wukong.pipeline.local import run_pipeline

    return run_pipeline(wukong_scaling_pipeline, workdir, arguments, dataset_uri="dataset", runs_root="runs")


if __name__ == "__main__":
    print(compile_pipeline())
