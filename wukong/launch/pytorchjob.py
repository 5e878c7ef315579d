"""Build the PyTorchJob that trains Wukong on ``nodes`` machines (Kubeflow training operator, v1).

One Master and ``nodes - 1`` Workers, each running ``torchrun ... -m wukong.train`` with
``nproc_per_node`` processes in a container named ``pytorch`` (the operator requires the name).
The elastic policy (c10d rendezvous, ``max_restarts``) restarts failed workers; training resumes
from its latest complete checkpoint. S3 credentials come from a Kubernetes Secret, never as values.

The v1 operator is deprecated upstream (patch releases only); :mod:`wukong.launch.trainjob` builds
the same job as a Kubeflow Trainer v2 TrainJob.
"""

from __future__ import annotations

from typing import Any

from kubeflow.training import (
    KubeflowOrgV1ElasticPolicy,
    KubeflowOrgV1PyTorchJob,
    KubeflowOrgV1PyTorchJobSpec,
    KubeflowOrgV1ReplicaSpec,
    constants,
)
from kubeflow.training.models import KubeflowOrgV1RunPolicy
from kubernetes import client as k8s

from wukong.launch.resources import (
    JobResources,
    job_labels,
    job_name,
    training_container,
    training_pod,
    wire,
)

CONTAINER = "pytorch"


def build_pytorchjob(name: str, train_args: list[str], resources: JobResources) -> KubeflowOrgV1PyTorchJob:
    """The PyTorchJob running ``python -m wukong.train <train_args>`` on ``resources.nodes`` machines."""
    args = [
        f"--nnodes={resources.nodes}",
        f"--nproc-per-node={resources.nproc_per_node}",
        f"--max-restarts={resources.max_restarts}",
        "-m",
        "wukong.train",
        *train_args,
    ]
    template = training_pod(training_container(CONTAINER, ["torchrun"], args, resources), resources)
    replicas = {"Master": KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="OnFailure", template=template)}
    if resources.nodes > 1:
        replicas["Worker"] = KubeflowOrgV1ReplicaSpec(
            replicas=resources.nodes - 1, restart_policy="OnFailure", template=template
        )
    return KubeflowOrgV1PyTorchJob(
        api_version=constants.API_VERSION,
        kind=constants.PYTORCHJOB_KIND,
        metadata=k8s.V1ObjectMeta(name=name, namespace=resources.namespace, labels=job_labels(resources)),
        spec=KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(resources.nproc_per_node),
            elastic_policy=KubeflowOrgV1ElasticPolicy(
                rdzv_backend="c10d",
                min_replicas=resources.nodes,
                max_replicas=resources.nodes,
                max_restarts=resources.max_restarts,
            ),
            run_policy=KubeflowOrgV1RunPolicy(
                backoff_limit=resources.backoff_limit,
                active_deadline_seconds=resources.active_deadline_seconds,
                ttl_seconds_after_finished=resources.ttl_seconds_after_finished,
                clean_pod_policy="Running",
            ),
            pytorch_replica_specs=replicas,
        ),
    )


def to_wire(job: KubeflowOrgV1PyTorchJob) -> dict[str, Any]:
    """The job as the Kubernetes API sees it (camelCase, no nulls)."""
    return wire(job)


def to_yaml(job: KubeflowOrgV1PyTorchJob) -> str:
    import yaml

    return yaml.safe_dump(to_wire(job), sort_keys=False)


__all__ = ["CONTAINER", "JobResources", "build_pytorchjob", "job_name", "to_wire"]
