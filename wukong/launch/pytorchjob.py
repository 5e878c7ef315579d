"""Build the PyTorchJob that trains Wukong on ``nodes`` machines (Kubeflow training operator, v1).

One Master and ``nodes - 1`` Workers, each running ``torchrun ... -m wukong.train`` with
``nproc_per_node`` processes in a container named ``pytorch`` (the operator requires the name).
The elastic policy (c10d rendezvous, ``max_restarts``) restarts failed workers; training resumes
from its latest complete checkpoint. S3 credentials come from a Kubernetes Secret, never as values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
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
from kubernetes.client import ApiClient

S3_SECRET = "wukong-s3-credentials"
DEFAULTS_CONFIG_MAP = "wukong-defaults"
CONTAINER = "pytorch"


@dataclass
class JobResources:
    """Where and how big: everything about the job that is not a training setting."""

    image: str = "ghcr.io/wukong-rec/wukong:0.1.0-cpu"
    namespace: str = "kubeflow"
    nodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 0
    cpu: str = "4"
    memory: str = "16Gi"
    shm_size: str = "8Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class: str | None = None
    service_account: str = "wukong"
    max_restarts: int = 3
    backoff_limit: int = 3
    active_deadline_seconds: int | None = 7 * 24 * 3600
    ttl_seconds_after_finished: int = 24 * 3600
    nccl_env: dict[str, str] = field(
        default_factory=lambda: {
            "NCCL_DEBUG": "WARN",
            "NCCL_ASYNC_ERROR_HANDLING": "1",
            "TORCH_NCCL_BLOCKING_WAIT": "0",
        }
    )

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.nproc_per_node < 1 or self.gpus_per_node < 0:
            raise ValueError("nodes and nproc_per_node must be >= 1 and gpus_per_node >= 0")
        if self.gpus_per_node and self.nproc_per_node != self.gpus_per_node:
            raise ValueError(
                f"with GPUs, one process per GPU: nproc_per_node {self.nproc_per_node} != {self.gpus_per_node}"
            )


def job_name(run_id: str, prefix: str = "wukong-train") -> str:
    """A valid, deterministic Kubernetes name for a run: the same run (a retried step) finds its job."""
    clean = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[:30].strip("-")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{prefix}-{clean}-{digest}" if clean else f"{prefix}-{digest}"


def _container(train_args: list[str], resources: JobResources) -> k8s.V1Container:
    limits = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpus_per_node:
        limits["nvidia.com/gpu"] = str(resources.gpus_per_node)
    secret = [
        k8s.V1EnvVar(
            name=key, value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=S3_SECRET, key=key))
        )
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    endpoint = k8s.V1EnvVar(
        name="AWS_ENDPOINT_URL",
        value_from=k8s.V1EnvVarSource(
            config_map_key_ref=k8s.V1ConfigMapKeySelector(
                name=DEFAULTS_CONFIG_MAP, key="AWS_ENDPOINT_URL", optional=True
            )
        ),
    )
    nccl = (
        [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(resources.nccl_env.items())]
        if resources.gpus_per_node
        else []
    )
    return k8s.V1Container(
        name=CONTAINER,
        image=resources.image,
        command=["torchrun"],
        args=[
            f"--nnodes={resources.nodes}",
            f"--nproc-per-node={resources.nproc_per_node}",
            f"--max-restarts={resources.max_restarts}",
            "-m",
            "wukong.train",
            *train_args,
        ],
        env=[*secret, endpoint, *nccl],
        resources=k8s.V1ResourceRequirements(requests=dict(limits), limits=limits),
        volume_mounts=[k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")],
        security_context=k8s.V1SecurityContext(
            run_as_non_root=True, allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])
        ),
    )


def build_pytorchjob(name: str, train_args: list[str], resources: JobResources) -> KubeflowOrgV1PyTorchJob:
    """The PyTorchJob running ``python -m wukong.train <train_args>`` on ``resources.nodes`` machines."""
    pod = k8s.V1PodSpec(
        containers=[_container(train_args, resources)],
        volumes=[
            k8s.V1Volume(
                name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=resources.shm_size)
            )
        ],
        node_selector=resources.node_selector or None,
        tolerations=[k8s.V1Toleration(**t) for t in resources.tolerations] or None,
        priority_class_name=resources.priority_class,
        service_account_name=resources.service_account,
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=1000, fs_group=1000),
    )
    template = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(
            labels={"app.kubernetes.io/name": "wukong", "app.kubernetes.io/component": "train"},
            annotations={"sidecar.istio.io/inject": "false"},
        ),
        spec=pod,
    )
    replicas = {"Master": KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="OnFailure", template=template)}
    if resources.nodes > 1:
        replicas["Worker"] = KubeflowOrgV1ReplicaSpec(
            replicas=resources.nodes - 1, restart_policy="OnFailure", template=template
        )
    return KubeflowOrgV1PyTorchJob(
        api_version=constants.API_VERSION,
        kind=constants.PYTORCHJOB_KIND,
        metadata=k8s.V1ObjectMeta(
            name=name, namespace=resources.namespace, labels={"app.kubernetes.io/name": "wukong"}
        ),
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
    return ApiClient().sanitize_for_serialization(job)


def to_yaml(job: KubeflowOrgV1PyTorchJob) -> str:
    import yaml

    return yaml.safe_dump(to_wire(job), sort_keys=False)
