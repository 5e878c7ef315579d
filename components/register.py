"""Register: add the model to the registry with metrics and lineage; promote it if it passes the gate."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    dataset: Input[Dataset],
    model: Input[Model],
    split: str,
    registry_uri: str,
    registered_name: str,
    min_auc: float,
    tolerance: float,
    pipeline_run: str,
) -> str:
    """Registers with the metrics of the evaluation on ``split``; returns the result (version, promoted,
    reason) as JSON."""
    import json

    from wukong.io import open_storage
    from wukong.pipeline import steps

    lineage = {
        "dataset": dataset.metadata["uri"],
        "dataset_run_id": dataset.metadata.get("run_id"),
        "pipeline_run": pipeline_run,
    }
    metrics = json.loads(open_storage(model.metadata["uri"]).read_bytes(f"eval-{split}.json"))
    result = steps.register(
        model.metadata["uri"],
        metrics,
        registry_uri,
        registered_name,
        min_auc,
        tolerance,
        lineage,
        dataset_uri=dataset.metadata["uri"],
        split=split,
    )
    print(
        f"registered {result['name']} version {result['version']}; promoted: {result['promoted']} ({result['reason']})"
    )
    return json.dumps(result, default=str)
