"""Tune report: rank each model's trials on validation, publish the best presets and the tables in the UI."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_report(
    dataset: Input[Dataset],
    first: list,
    second: list,
    models: list,
    space: str,
    trials: int,
    startup_trials: int,
    sampler: str,
    seed: int,
    metric: str,
    preset: str,
    overrides: list,
    summary: Output[Markdown],
    tuned: Output[Artifact],
) -> str:
    """``tuned`` is a folder: ``<model>/best.yaml`` (``wukong train --config``), ``<model>/trials.md``,
    ``<model>/trials.jsonl`` and ``summary.md``; ``summary`` shows the tables in the UI. Returns each
    model's best trial (id, validation metrics, overrides) as JSON."""
    import json
    import os

    from wukong.experiments.tune_stages import StagedSearch

    settings = dict(space=space, trials=trials, startup_trials=startup_trials, sampler=sampler, seed=seed)
    search = StagedSearch.of(dataset.metadata["uri"], models, overrides, metric=metric, preset=preset, **settings)
    report = search.report([json.loads(r) for r in [*first, *second]])
    for name, text in report.files.items():
        path = os.path.join(tuned.path, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    tuned.metadata["models"] = list(report.bests)
    with open(summary.path, "w") as f:
        f.write(report.markdown)
    keep = ("id", "valid", "overrides", "mflops_per_example", "steps")
    return json.dumps({model: {k: best[k] for k in keep} for model, best in report.bests.items()}, default=str)
