"""Run a Kubeflow Trainer v2 TrainJob to completion through the ``kubeflow`` SDK's ``TrainerClient``
(Kubernetes backend): create it with ``train``, wait with ``wait_for_job_status``, read its steps,
events and rank-0 log, delete it.

Where the SDK has no call, the client's own Kubernetes connection is used: the raw TrainJob for its
conditions (the SDK reduces them to a status word), and the node pod's log read once per poll (the
SDK's ``get_job_logs`` would read the TrainJob again).
"""

from __future__ import annotations

import os
import re
from typing import Any

from kubeflow.common.types import KubernetesBackendConfig
from kubeflow.trainer import TrainerClient
from kubeflow.trainer.constants import constants
from kubeflow.trainer.types import types
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from wukong.launch.launcher import JobLauncher, LaunchError, LogFollower, latest_condition
from wukong.launch.resources import kube_configuration
from wukong.launch.trainjob import NODE, TrainJobRequest

COMPLETE, FAILED = constants.TRAINJOB_COMPLETE, constants.TRAINJOB_FAILED
EVENT_LINES = 10
# runtimePatches came with Trainer v2.2; an older TrainJob CRD would silently drop them (credentials,
# /dev/shm, placement), so older control planes are refused.
MIN_TRAINER = (2, 2)
VERSION_CONFIG_MAP = "kubeflow-trainer-public"  # in KUBEFLOW_SYSTEM_NAMESPACE, readable by everyone


def _status(error: BaseException) -> int | None:
    """The HTTP status behind an SDK error (the SDK wraps the ApiException it got)."""
    cause = error.__cause__
    return cause.status if isinstance(cause, ApiException) else None


class TrainJobLauncher(JobLauncher):
    """TrainJobs of Kubeflow Trainer v2, through ``TrainerClient``."""

    kind, resource = "TrainJob", "trainjob"

    def __init__(self, client: TrainerClient, **kwargs: Any) -> None:
        super().__init__(client.backend.namespace, **kwargs)
        self.client = client

    @classmethod
    def connect(cls, namespace: str, configuration: k8s.Configuration | None = None, **kwargs: Any):
        """A launcher for ``namespace`` of the cluster this runs in (or the kubeconfig's)."""
        config = KubernetesBackendConfig(
            namespace=namespace, client_configuration=configuration or kube_configuration()
        )
        return cls(TrainerClient(config), **kwargs)

    @staticmethod
    def name_of(job: TrainJobRequest) -> str:
        return job.name

    def get(self, name: str) -> types.TrainJob | None:
        try:
            return self.client.get_job(name)
        except RuntimeError as error:
            if _status(error) == 404:
                return None
            raise LaunchError(f"reading {self.where(name)} failed: {error} ({error.__cause__})") from None

    def runtime(self, name: str) -> types.Runtime:
        try:
            return self.client.get_runtime(name)
        except RuntimeError as error:
            hint = (
                f"no TrainingRuntime or ClusterTrainingRuntime named {name} (apply k8s/runtimes with "
                "`kubectl apply -k k8s/runtimes`; is Kubeflow Trainer v2 installed?)"
                if _status(error) == 404
                else f"{error} ({error.__cause__})"
            )
            raise LaunchError(f"reading the runtime of a TrainJob in {self.namespace} failed: {hint}") from None

    def check_trainer(self) -> None:
        """Refuse a control plane older than ``MIN_TRAINER``; say so when its version cannot be read."""
        system = os.environ.get("KUBEFLOW_SYSTEM_NAMESPACE", "kubeflow-system")
        try:
            data = self.client.backend.core_api.read_namespaced_config_map(VERSION_CONFIG_MAP, system).data
            version = data["kubeflow_trainer_version"]
        except (ApiException, HTTPError, KeyError, TypeError):
            self.log(f"Kubeflow Trainer version unknown (no {system}/{VERSION_CONFIG_MAP}): runtime patches need v2.2+")
            return
        if tuple(int(n) for n in re.findall(r"\d+", version)[:2]) < MIN_TRAINER:
            least = ".".join(map(str, MIN_TRAINER))
            raise LaunchError(
                f"this cluster runs Kubeflow Trainer {version}; these TrainJobs need v{least} or later "
                "(runtimePatches): upgrade the Trainer, or use launcher=pytorchjob with the v1 operator"
            )

    def create(self, job: TrainJobRequest) -> None:
        if job.namespace != self.namespace:
            raise LaunchError(
                f"TrainJob {job.namespace}/{job.name} cannot be created by a launcher for {self.namespace}"
            )
        self.check_trainer()
        runtime = self.runtime(job.runtime)
        try:
            self.client.train(runtime=runtime, trainer=job.trainer, options=list(job.options))
        except RuntimeError as error:
            if _status(error) == 409:
                return  # created meanwhile by another attempt: follow it
            raise LaunchError(
                f"creating {self.where(job.name)} failed: {error.__cause__ or error}; may this service account "
                "create trainjobs?"
            ) from None

    def _node_log(self, job: types.TrainJob) -> tuple[str | None, list[str]]:
        step = next((s for s in job.steps if s.name == f"{NODE}-0"), None)
        if step is None or step.status == constants.POD_PENDING:
            return None, []
        try:
            text = self.client.backend.core_api.read_namespaced_pod_log(step.pod_name, self.namespace, container=NODE)
        except (ApiException, HTTPError):
            return None, []  # the pod may be gone (a restart), the server briefly away: logs are best effort
        return step.pod_name, text.splitlines()

    def trainer_log(self, name: str) -> tuple[str | None, list[str]]:
        job = self.get(name)
        return self._node_log(job) if job is not None else (None, [])

    def conditions(self, name: str) -> dict[str, Any]:
        """The TrainJob as stored (its status conditions say why it failed)."""
        return self.client.backend.custom_api.get_namespaced_custom_object(
            constants.GROUP, constants.VERSION, self.namespace, constants.TRAINJOB_PLURAL, name
        )

    def events(self, name: str) -> list[str]:
        try:
            events = self.client.get_job_events(name)
        except (RuntimeError, TimeoutError):
            return []  # events are best effort
        return [f"{e.involved_object_kind} {e.involved_object_name}: {e.reason}: {e.message}" for e in events][
            -EVENT_LINES:
        ]

    def wait(self, name: str) -> types.TrainJob:
        follower, state = LogFollower(self.log), {"phase": None}

        def on_poll(job: types.TrainJob) -> None:
            state["phase"] = self.report_phase(name, job.status, state["phase"])
            pod, lines = self._node_log(job)
            if pod:
                follower.update(pod, lines)

        try:
            return self.client.wait_for_job_status(
                name,
                status={COMPLETE},
                timeout=self.timeout_seconds,
                polling_interval=min(self.poll_seconds, self.timeout_seconds / 2),
                callbacks=[on_poll],
            )
        except TimeoutError:
            raise self.timed_out(name, state["phase"] or "Created") from None
        except RuntimeError as error:  # failed, or could not be read
            job = self.get(name)
            if job is None:
                raise self.disappeared(name) from None
            if job.status != FAILED:
                raise LaunchError(f"following {self.where(name)} failed: {error} ({error.__cause__})") from None
            _, message = latest_condition(self.conditions(name))
            raise self.failed(name, message, follower.tail(), self.events(name)) from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_job(name)
        except RuntimeError as error:
            if _status(error) != 404:
                raise LaunchError(f"deleting {self.where(name)}: {error.__cause__ or error}") from None
