"""What a pipeline step does to train on the cluster: build the job for the chosen operator from its
parameters and the environment, then run it to completion.

``api`` is ``trainjob`` (Kubeflow Trainer v2, the current one) or ``pytorchjob`` (the training
operator v1, for clusters that still run it). Image, namespace, node selector, priority class, queue,
runtime and wait bound come from the environment (the ``wukong-defaults`` ConfigMap, see
:func:`wukong.launch.resources.resources_from_env`; ``WUKONG_TRAINING_RUNTIME``, ``WUKONG_JOB_POLL_S``,
``WUKONG_JOB_TIMEOUT_S``, ``WUKONG_DELETE_JOB``); the job name from the run's ``--output``, so a
retried step follows the job its first attempt created.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wukong.launch.resources import JobResources

APIS = ("trainjob", "pytorchjob")


def build_job(
    api: str, train_args: list[str], resources: JobResources, runtime: str | None = None, name: str | None = None
) -> Any:
    """The job object of ``api`` for ``train_args``, named ``name`` or after their ``--output`` (so the
    same run always finds the same job)."""
    output = train_args[train_args.index("--output") + 1]
    if api == "trainjob":
        from wukong.launch import trainjob

        name = name or trainjob.job_name(output)
        return trainjob.build_trainjob(name, train_args, resources, runtime or trainjob.RUNTIME)
    if api == "pytorchjob":
        from wukong.launch import pytorchjob

        return pytorchjob.build_pytorchjob(name or pytorchjob.job_name(output), train_args, resources)
    raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")


def connect(api: str, namespace: str, **kwargs: Any):
    """A launcher of ``api`` jobs in ``namespace`` of this cluster (in a pod) or the kubeconfig's."""
    if api == "trainjob":
        from wukong.launch.trainjob_launcher import TrainJobLauncher

        return TrainJobLauncher.connect(namespace, **kwargs)
    from wukong.launch.launcher import PyTorchJobLauncher, api_client

    return PyTorchJobLauncher(api_client(), namespace, **kwargs)


def job_resources(api: str, nodes: int, nproc_per_node: int, gpus_per_node: int) -> JobResources:
    """The resources from the environment (:func:`~wukong.launch.resources.resources_from_env`); for a
    TrainJob without ``WUKONG_PRIORITY_CLASS``, whose runtime (``WUKONG_TRAINING_RUNTIME``) sets it."""
    from wukong.launch.resources import resources_from_env

    resources = resources_from_env(nodes, nproc_per_node, gpus_per_node)
    if api == "trainjob":
        resources.priority_class = None
    return resources


def launch_training(api: str, train_args: list[str], nodes: int, nproc_per_node: int, gpus_per_node: int) -> Any:
    """Train on the cluster as the pipeline's train step does with ``launcher=trainjob|pytorchjob``."""
    from wukong.launch.resources import TWO_WEEKS

    resources = job_resources(api, nodes, nproc_per_node, gpus_per_node)
    job = build_job(api, train_args, resources, os.environ.get("WUKONG_TRAINING_RUNTIME") or None)
    launcher = connect(
        api,
        resources.namespace,
        poll_seconds=float(os.environ.get("WUKONG_JOB_POLL_S", 15)),
        timeout_seconds=float(os.environ.get("WUKONG_JOB_TIMEOUT_S", TWO_WEEKS)),
    )
    return launcher.run(job, delete_on_success=os.environ.get("WUKONG_DELETE_JOB", "") == "1")
