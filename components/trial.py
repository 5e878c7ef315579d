"""Trial: train one config (locally, or as a multi-node TrainJob or PyTorchJob) and evaluate it; a sweep point or a
tuning trial."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_trial(
    dataset: Input[Dataset],
    trial: str,
    runs_root: str,
    run_id: str,
    launcher: str,
    nodes: int,
    nproc_per_node: int,
    gpus_per_node: int,
    keep_failures: bool,
    metrics: Output[Metrics],
) -> str:
    """Writes the run under ``<runs_root>/<run_id>/<trial id>``; returns the trial's record as JSON. With
    ``keep_failures`` a failed trial returns its failed record (a search goes on) instead of failing the step."""
    import json

    from wukong.experiments.trials import TrialSpec, run_trial, run_trial_keeping_failures
    from wukong.pipeline.steps import run_folder

    spec = TrialSpec.from_dict(json.loads(trial))
    run = run_trial_keeping_failures if keep_failures else run_trial
    record = run(
        spec,
        dataset.metadata["uri"],
        run_folder(runs_root, run_id, spec.id),
        launcher=launcher,
        nproc=nproc_per_node,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
    )
    if record["status"] == "ok":
        metrics.log_metric("mflops_per_example", record["mflops_per_example"])
        metrics.log_metric("training_flops", record["training_flops"])
        for split in spec.splits:
            for name in ("auc", "logloss", "excess_logloss"):
                if name in record[split]:
                    metrics.log_metric(f"{split}_{name}", record[split][name])
    return json.dumps(record, default=str)
