"""torchx component for Wukong training (registered as ``wukong.train`` through the
``torchx.components`` entry point).

On a laptop::

    torchx run -s local_cwd wukong.train --data runs/ml --output runs/tx -j 1x2 -- --config movielens

On Kubernetes, as a Kubeflow Trainer v2 TrainJob (or, with ``api=pytorchjob``, a v1 PyTorchJob)
through this project's ``kubeflow`` scheduler::

    torchx run -s kubeflow -cfg api=trainjob,namespace=wukong wukong.train --image REGISTRY/wukong:0.1.0-cuda \\
        --data s3://wukong/datasets/ml --output s3://wukong/runs/tx -j 4x8 --gpu 8
"""

import torchx.specs as specs
from torchx.components.dist import torchrun


def train(
    *train_args: str,
    data: str,
    output: str,
    config: str = "default",
    model: str = "wukong",
    image: str = "ghcr.io/wukong-rec/wukong:0.1.0-cpu",
    j: str = "1x2",
    cpu: int = 4,
    gpu: int = 0,
    memMB: int = 16384,
    max_retries: int = 3,
) -> specs.AppDef:
    """Train a Wukong-family model with ``python -m wukong.train`` under torchrun.

    Args:
        train_args: further ``wukong train`` flags, e.g. ``--epochs 3 --set model.num_layers=4``
        data: URI of a prepared dataset
        output: URI for checkpoints, model and metrics
        config: configuration preset
        model: wukong, dlrm, dcnv2 or finalmlp
        image: container image with the project installed
        j: nodes x processes per node, e.g. 4x8
        cpu: CPUs per node
        gpu: GPUs per node (one process per GPU)
        memMB: memory per node in MB
        max_retries: restarts of failed workers (training resumes from its checkpoints)
    """
    args = ["--data", data, "--output", output, "--config", config, "--model", model, *train_args]
    app = torchrun(
        *args,
        m="wukong.train",
        image=image,
        name="wukong-train",
        j=j,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        max_retries=max_retries,
    )
    app.roles[0].env.setdefault("PYTHONUNBUFFERED", "1")
    return app
