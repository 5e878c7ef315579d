"""Sweep point: train one upscaled config (locally, or as a multi-node PyTorchJob) and evaluate it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sweep_point(
    dataset: Input[Dataset],
    trial: str,
    runs_root: str,
    run_id: str,
    launcher: str,
    nodes: int,
    nproc_per_node: int,
    gpus_per_node: int,
    metrics: Output[Metrics],
) -> str:
    """Writes the run under ``<runs_root>/<run_id>/<point id>``; returns the point's record as JSON."""
    import json

    from wukong.experiments.trials import TrialSpec, run_trial
    from wukong.pipeline.steps import run_folder

    spec = TrialSpec.from_dict(json.loads(trial))
    record = run_trial(
        spec,
        dataset.metadata["uri"],
        run_folder(runs_root, run_id, spec.id),
        launcher=launcher,
        nproc=nproc_per_node,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
    )
    metrics.log_metric("mflops_per_example", record["mflops_per_example"])
    metrics.log_metric("training_flops", record["training_flops"])
    for split in spec.splits:
        for name in ("auc", "logloss", "excess_logloss"):
            if name in record[split]:
                metrics.log_metric(f"{split}_{name}", record[split][name])
    return json.dumps(record, default=str)
