"""Sweep plan: every (family, target MFLOP/example, seed) point of a scaling sweep, as trial specs."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sweep_plan(
    dataset: Input[Dataset],
    models: list,
    mflops: str,
    points: int,
    seeds: int,
    end_seeds: int,
    train_rows: int,
    preset: str,
    overrides: list,
    grid: list,
) -> list:
    """Returns one JSON trial spec per point (the items of the pipeline's ParallelFor)."""
    import json

    from wukong.experiments.sweep import Sweep, parse_grid, parse_targets

    sweep = Sweep(
        data=dataset.metadata["uri"],
        models=[str(m) for m in models],
        targets=parse_targets(mflops, points),
        seeds=seeds,
        end_seeds=end_seeds,
        rows=train_rows,
        preset=preset,
        overrides=[str(o) for o in overrides],
        grid=parse_grid([str(g) for g in grid]),
    )
    return [json.dumps(spec.to_dict()) for spec in sweep.plan()]
