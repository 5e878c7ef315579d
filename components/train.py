"""Train: one model on the dataset, locally with torchrun or on the cluster as a multi-node TrainJob
(Kubeflow Trainer v2, ``launcher=trainjob``) or PyTorchJob (training operator v1, ``launcher=pytorchjob``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    model_name: str,
    preset: str,
    overrides: list,
    runs_root: str,
    run_id: str,
    launcher: str,
    nodes: int,
    nproc_per_node: int,
    gpus_per_node: int,
    model: Output[Model],
    metrics: Output[Metrics],
    init_from: str = "",
) -> str:
    """Writes the run under ``<runs_root>/<run_id>``; returns that URI (also the Model's ``uri`` metadata).
    ``init_from``: the model folder to warm-start from (the warm-start step's), empty for a cold start."""
    import json

    from wukong.pipeline import steps

    output_uri = steps.run_folder(runs_root, run_id)
    card = steps.train(
        dataset.metadata["uri"],
        output_uri,
        model_name,
        preset,
        [str(o) for o in overrides],
        launcher,
        nproc_per_node=nproc_per_node,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        init_from=init_from,
    )
    model.metadata.update(
        {
            "uri": output_uri,
            "model": card["model"],
            "mflops_per_example": card["mflops_per_example"],
            "steps": card["steps"],
            "init_from": (card.get("init_from") or {}).get("from", ""),
            "framework": "pytorch+torchrec",
        }
    )
    with open(model.path, "w") as f:
        json.dump(card, f, indent=1, default=str)
    for name, value in card["metrics"]["valid"].items():
        if isinstance(value, (int, float)):
            metrics.log_metric(f"valid_{name}", value)
    return output_uri
