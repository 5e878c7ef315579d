"""Build the Kubeflow Trainer v2 TrainJob that trains Wukong on ``nodes`` machines.

A TrainJob (``trainer.kubeflow.org/v1alpha1``) names a runtime (this project's
``ClusterTrainingRuntime`` ``wukong-torchrec``, see :mod:`wukong.launch.runtime`) and says only what
differs per run:

- ``trainer``: the image, ``numNodes``, ``resourcesPerNode`` (CPU, memory, GPUs), the NCCL settings,
  and the command ``torchrun --nproc-per-node=N -m wukong.train <train args>``. The Trainer's torch
  plugin gives torchrun the rest through ``PET_NNODES``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and
  ``PET_MASTER_PORT``; ``--nproc-per-node`` is explicit because its default on CPU nodes is the CPU
  count, not the number of processes asked for (with GPUs both are one process per GPU).
- ``runtimePatches`` for the pod-level settings of the trainer nodes: S3 credentials by reference to
  the Secret, a memory-backed ``/dev/shm`` of ``shm_size``, node selector, tolerations, service
  account, non-root security contexts.

It is expressed as the ``kubeflow`` SDK's own inputs (:class:`TrainJobRequest`): a
``CustomTrainerContainer`` and SDK options, which ``TrainerClient.train`` submits.
:func:`to_wire` renders the object that call creates by running the SDK's ``train`` with the API
call captured, so a dry run shows exactly what is submitted.

A node lost mid-run fails its Job; the runtime's JobSet ``failurePolicy`` then recreates all nodes
(``maxRestarts``) and training resumes from the latest complete checkpoint under ``--output``
(``wukong train --resume auto``, the default). Pod priority cannot be patched per TrainJob: it
comes from the runtime (``wukong-torchrec-h100`` sets ``wukong-training``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeflow.trainer import options
from kubeflow.trainer.backends.kubernetes.backend import KubernetesBackend
from kubeflow.trainer.types import types

from wukong.launch.resources import (
    POD_ANNOTATIONS,
    POD_LABELS,
    JobResources,
    container_security,
    job_labels,
    limits,
    nccl_env,
    pod_security,
    shm_mount,
    shm_volume,
    storage_env,
    wire,
)
from wukong.launch.resources import job_name as _job_name

RUNTIME = "wukong-torchrec"
NODE = "node"  # the trainer's replicated job and container, as the Trainer names them
# JobSet names pods <job>-node-<job index>-<pod index>-<5 random>, which must be DNS-1035 labels
# (at most 63 characters): 40 leaves room for 1,000 nodes.
NAME_LENGTH = 40


@dataclass(frozen=True)
class TrainJobRequest:
    """A TrainJob as the ``kubeflow`` SDK takes it: ``TrainerClient.train(runtime, trainer, options)``
    in ``namespace``."""

    name: str
    namespace: str
    runtime: str
    trainer: types.CustomTrainerContainer
    options: tuple[Any, ...]


def job_name(run_id: str) -> str:
    """The deterministic TrainJob name of a run (shorter than a PyTorchJob's: see ``NAME_LENGTH``)."""
    return _job_name(run_id, max_length=NAME_LENGTH)


def torchrun_command(resources: JobResources) -> list[str]:
    return ["torchrun", f"--nproc-per-node={resources.nproc_per_node}", "-m", "wukong.train"]


def _node_patch(resources: JobResources) -> options.RuntimePatch:
    """Pod-level settings of the trainer nodes, as a runtime patch of the ``node`` replicated job."""
    container = options.ContainerPatch(
        name=NODE,
        env=wire(storage_env()),
        volume_mounts=[wire(shm_mount())],
        security_context=wire(container_security()),
    )
    pod = options.PodSpecPatch(
        service_account_name=resources.service_account,
        volumes=[wire(shm_volume(resources))],
        containers=[container],
        security_context=wire(pod_security()),
        node_selector=dict(resources.node_selector) or None,
        tolerations=[dict(t) for t in resources.tolerations] or None,
    )
    template = options.PodTemplatePatch(
        metadata={"labels": dict(POD_LABELS), "annotations": dict(POD_ANNOTATIONS)}, spec=pod
    )
    job = options.ReplicatedJobPatch(
        name=NODE, template=options.JobTemplatePatch(spec=options.JobSpecPatch(template=template))
    )
    return options.RuntimePatch(
        training_runtime_spec=options.TrainingRuntimeSpecPatch(
            template=options.JobSetTemplatePatch(spec=options.JobSetSpecPatch(replicated_jobs=[job]))
        )
    )


def build_trainjob(
    name: str, train_args: list[str], resources: JobResources, runtime: str = RUNTIME
) -> TrainJobRequest:
    """The TrainJob running ``torchrun -m wukong.train <train_args>`` on ``resources.nodes`` machines."""
    if resources.priority_class:
        raise ValueError(
            f"a TrainJob cannot set its pods' priority class ({resources.priority_class}): the runtime does "
            "(runtime patches have no priorityClassName); pick a runtime that sets it, e.g. wukong-torchrec-h100"
        )
    trainer = types.CustomTrainerContainer(
        image=resources.image,
        num_nodes=resources.nodes,
        resources_per_node=limits(resources),
        env=nccl_env(resources) or None,
    )
    chosen = [
        options.Name(name),
        options.Labels(job_labels(resources)),
        options.TrainerCommand(torchrun_command(resources)),
        options.TrainerArgs(list(train_args)),
        _node_patch(resources),
    ]
    if resources.active_deadline_seconds:
        chosen.append(options.ActiveDeadlineSeconds(resources.active_deadline_seconds))
    return TrainJobRequest(name, resources.namespace, runtime, trainer, tuple(chosen))


class _Captured:
    """Stands where the SDK keeps its ``CustomObjectsApi``: keeps the object instead of sending it."""

    body: dict[str, Any]

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, body: dict):
        self.body = body


class _RenderingBackend(KubernetesBackend):
    """The SDK's Kubernetes backend with no cluster: ``train`` builds the TrainJob and hands it to
    :class:`_Captured`. The runtime is given as an object, so it is not looked up."""

    def __init__(self, namespace: str) -> None:  # no super().__init__: it connects to a cluster
        self.namespace = namespace
        self.custom_api = _Captured()


def runtime_ref(name: str, image: str) -> types.Runtime:
    """A reference to the ClusterTrainingRuntime ``name`` (what ``TrainerClient.get_runtime`` returns for it)."""
    trainer = types.RuntimeTrainer(trainer_type=types.TrainerType.CUSTOM_TRAINER, framework="torch", image=image)
    return types.Runtime(name=name, trainer=trainer, kind=types.RuntimeKind.CLUSTER_TRAINING_RUNTIME)


def to_wire(request: TrainJobRequest) -> dict[str, Any]:
    """The TrainJob ``TrainerClient.train`` creates for ``request`` (its namespace in the metadata, as stored)."""
    backend = _RenderingBackend(request.namespace)
    backend.train(
        runtime=runtime_ref(request.runtime, request.trainer.image),
        trainer=request.trainer,
        options=list(request.options),
    )
    body = backend.custom_api.body
    body["metadata"] = {"name": body["metadata"]["name"], "namespace": request.namespace, **body["metadata"]}
    return body


def to_yaml(request: TrainJobRequest) -> str:
    import yaml

    return yaml.safe_dump(to_wire(request), sort_keys=False)
