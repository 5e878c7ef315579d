"""Tune plan: one stage of a two-stage search (:mod:`wukong.experiments.tune_stages`), as trial specs."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_plan(
    dataset: Input[Dataset],
    stage: int,
    records: list,
    models: list,
    space: str,
    trials: int,
    startup_trials: int,
    sampler: str,
    seed: int,
    metric: str,
    preset: str,
    overrides: list,
) -> list:
    """Returns one JSON trial spec per trial of stage ``stage`` (the items of the pipeline's ParallelFor);
    stage 2 is drawn knowing stage 1's ``records``."""
    import json

    from wukong.experiments.tune_stages import StagedSearch

    settings = dict(space=space, trials=trials, startup_trials=startup_trials, sampler=sampler, seed=seed)
    search = StagedSearch.of(dataset.metadata["uri"], models, overrides, metric=metric, preset=preset, **settings)
    history = [json.loads(r) for r in records]
    return [json.dumps(spec.to_dict()) for spec in search.plan(stage, history)]
