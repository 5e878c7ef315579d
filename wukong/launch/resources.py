"""What every training job on Kubernetes shares, whichever operator runs it: the resources it asks
for, its deterministic name, and the pod pieces (S3 credentials from a Secret, a memory-backed
``/dev/shm``, NCCL settings, non-root security contexts).

The PyTorchJob builder (:mod:`wukong.launch.pytorchjob`), the TrainJob builder
(:mod:`wukong.launch.trainjob`) and the ClusterTrainingRuntime (:mod:`wukong.launch.runtime`) are
all made of these pieces, so the three agree by construction.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client import ApiClient

S3_SECRET = "wukong-s3-credentials"
DEFAULTS_CONFIG_MAP = "wukong-defaults"
GPU = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # Kueue admits the job into this LocalQueue
JOB_LABELS = {"app.kubernetes.io/name": "wukong"}
POD_LABELS = {"app.kubernetes.io/name": "wukong", "app.kubernetes.io/component": "train"}
POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
SHM = "dshm"
TWO_WEEKS = 14 * 24 * 3600
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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
    queue: str | None = None
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


def job_name(run_id: str, prefix: str = "wukong-train", max_length: int = 52) -> str:
    """A valid, deterministic Kubernetes name for a run: the same run (a retried step) finds its job.

    ``<prefix>-<cleaned run id, cut to fit>-<8 hex digits of its SHA-256>``, at most ``max_length``
    characters (DNS-1035: lower case, starts with a letter, no trailing dash)."""
    room = max_length - len(prefix) - 10  # the two dashes and the digest
    clean = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")[:room].strip("-")
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{prefix}-{clean}-{digest}" if clean else f"{prefix}-{digest}"


def job_labels(resources: JobResources) -> dict[str, str]:
    """Labels of the job object itself; with a queue, Kueue admits the job through it."""
    return {**JOB_LABELS, **({QUEUE_LABEL: resources.queue} if resources.queue else {})}


def limits(resources: JobResources) -> dict[str, str]:
    """Per node: CPU, memory and GPUs (requests equal limits: the pods get the Guaranteed class)."""
    found = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpus_per_node:
        found[GPU] = str(resources.gpus_per_node)
    return found


def storage_env() -> list[k8s.V1EnvVar]:
    """S3 credentials by reference to the Secret (never values) and the endpoint from the ConfigMap."""
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
    return [*secret, endpoint]


def nccl_env(resources: JobResources) -> dict[str, str]:
    """NCCL settings, only where there are GPUs."""
    return dict(sorted(resources.nccl_env.items())) if resources.gpus_per_node else {}


def shm_volume(resources: JobResources) -> k8s.V1Volume:
    """A memory-backed ``/dev/shm`` (the container runtime's default 64 MiB starves data loaders and NCCL)."""
    return k8s.V1Volume(name=SHM, empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=resources.shm_size))


def shm_mount() -> k8s.V1VolumeMount:
    return k8s.V1VolumeMount(name=SHM, mount_path="/dev/shm")


def container_security() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        run_as_non_root=True, allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])
    )


def pod_security() -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=1000, fs_group=1000)


def training_container(
    name: str, command: list[str], args: list[str] | None, resources: JobResources
) -> k8s.V1Container:
    """The training container: the image, credentials, NCCL settings, limits, ``/dev/shm``, non-root."""
    return k8s.V1Container(
        name=name,
        image=resources.image,
        command=command,
        args=args,
        env=[*storage_env(), *(k8s.V1EnvVar(name=k, value=v) for k, v in nccl_env(resources).items())],
        resources=k8s.V1ResourceRequirements(requests=limits(resources), limits=limits(resources)),
        volume_mounts=[shm_mount()],
        security_context=container_security(),
    )


def training_pod(container: k8s.V1Container, resources: JobResources) -> k8s.V1PodTemplateSpec:
    """The pod template around ``container``: placement, identity, ``/dev/shm`` and security."""
    spec = k8s.V1PodSpec(
        containers=[container],
        volumes=[shm_volume(resources)],
        node_selector=resources.node_selector or None,
        tolerations=[k8s.V1Toleration(**t) for t in resources.tolerations] or None,
        priority_class_name=resources.priority_class,
        service_account_name=resources.service_account,
        security_context=pod_security(),
    )
    return k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=dict(POD_LABELS), annotations=dict(POD_ANNOTATIONS)), spec=spec
    )


def wire(obj: Any) -> Any:
    """A Kubernetes client model (or SDK model) as the API sees it: camelCase, no nulls."""
    return ApiClient().sanitize_for_serialization(obj)


def namespace_from_env() -> str:
    """``WUKONG_NAMESPACE``, else the namespace of the pod this runs in, else ``kubeflow``."""
    return os.environ.get("WUKONG_NAMESPACE") or (
        NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "kubeflow"
    )


def parse_node_selector(text: str) -> dict[str, str]:
    """``key=value[,key=value]`` (the ConfigMap's and the command line's form) as a dict."""
    return dict(item.strip().split("=", 1) for item in text.split(",") if "=" in item)


def resources_from_env(nodes: int, nproc_per_node: int, gpus_per_node: int) -> JobResources:
    """The resources a pipeline step asks for: sizes from its parameters, the rest from the environment
    (the ``wukong-defaults`` ConfigMap: ``WUKONG_IMAGE``, ``WUKONG_NAMESPACE``, ``WUKONG_NODE_SELECTOR``,
    ``WUKONG_PRIORITY_CLASS``, ``WUKONG_QUEUE``). With GPUs, one process per GPU and the GPU toleration."""
    return JobResources(
        image=os.environ.get("WUKONG_IMAGE") or JobResources.image,
        namespace=namespace_from_env(),
        nodes=nodes,
        nproc_per_node=gpus_per_node or nproc_per_node,
        gpus_per_node=gpus_per_node,
        node_selector=parse_node_selector(os.environ.get("WUKONG_NODE_SELECTOR", "")),
        tolerations=[dict(GPU_TOLERATION)] if gpus_per_node else [],
        priority_class=os.environ.get("WUKONG_PRIORITY_CLASS") or None,
        queue=os.environ.get("WUKONG_QUEUE") or None,
    )


def kube_configuration(config_file: str | None = None) -> k8s.Configuration:
    """How to reach the API server: the pod's service account in a cluster, else the kubeconfig
    (``config_file``, else ``KUBECONFIG`` read now, not at import as the client library does)."""
    from kubernetes import config

    configuration = k8s.Configuration()
    if config_file is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return configuration
        except config.ConfigException:
            config_file = os.environ.get("KUBECONFIG") or None
    config.load_kube_config(config_file=config_file, client_configuration=configuration)
    return configuration
