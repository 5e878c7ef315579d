"""Run a training job to completion: get-or-create by a deterministic name, wait (days if need be),
stream the trainer's log, fail loudly with the job's conditions and last log lines.

:class:`JobLauncher` holds what every operator shares; :class:`PyTorchJobLauncher` (training
operator v1, here) and :class:`wukong.launch.trainjob_launcher.TrainJobLauncher` (Kubeflow Trainer
v2, through the ``kubeflow`` SDK) say how to create, read, wait for and delete their kind.

The public KFP PyTorchJob launcher stops waiting after 10 minutes and reports failed jobs as
succeeded; these wait up to ``timeout_seconds`` (default two weeks), raise with the conditions and
the last log lines when the job fails, and find the job created earlier when a pipeline step is
retried (the name is deterministic).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from wukong.launch.pytorchjob import CONTAINER, to_wire
from wukong.launch.resources import TWO_WEEKS, kube_configuration

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
TAIL_LINES = 20


class LaunchError(RuntimeError):
    """The job failed, or could not be created, or did not finish in time."""


def latest_condition(job: dict[str, Any]) -> tuple[str, str]:
    """(phase, message) from a job's latest true condition (the shape both operators write)."""
    conditions = [c for c in job.get("status", {}).get("conditions") or [] if c.get("status") == "True"]
    if not conditions:
        return "Pending", ""
    latest = conditions[-1]
    return latest["type"], f"{latest.get('reason', '')}: {latest.get('message', '')}".strip(": ")


class LogFollower:
    """Prints each line of the trainer's log once, in order, as it grows. A different pod (the
    JobSet recreated the nodes) or a shorter log (the container restarted) is followed from its start."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.pod, self.printed, self.lines = log, None, 0, []

    def update(self, pod: str, lines: list[str]) -> None:
        if pod != self.pod or len(lines) < self.printed:
            self.pod, self.printed = pod, 0
        for line in lines[self.printed :]:
            self.log(line)
        self.printed, self.lines = len(lines), lines

    def tail(self) -> list[str]:
        return self.lines[-TAIL_LINES:]


class JobLauncher(ABC):
    """Get-or-create, follow to the end, report: the same for every kind of training job."""

    kind: ClassVar[str]  # as in the API: PyTorchJob, TrainJob
    resource: ClassVar[str]  # as kubectl names it: pytorchjob, trainjob

    def __init__(
        self,
        namespace: str,
        poll_seconds: float = 15.0,
        timeout_seconds: float = TWO_WEEKS,
        log: Callable[[str], None] = print,
    ) -> None:
        self.namespace, self.poll_seconds, self.timeout_seconds, self.log = (
            namespace,
            poll_seconds,
            timeout_seconds,
            log,
        )

    # What each kind implements.
    @staticmethod
    @abstractmethod
    def name_of(job: Any) -> str:
        """The name of an unsubmitted job."""

    @abstractmethod
    def get(self, name: str) -> Any | None:
        """The job, or None when there is none of that name."""

    @abstractmethod
    def create(self, job: Any) -> None:
        """Submit ``job``; LaunchError when the cluster refuses it."""

    @abstractmethod
    def wait(self, name: str) -> Any:
        """Follow the job until it succeeds (returned), fails or runs out of time (LaunchError)."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def trainer_log(self, name: str) -> tuple[str | None, list[str]]:
        """(pod, lines) of the trainer's first node (the rank-0 log); (None, []) before it has one."""

    # Shared.
    def where(self, name: str) -> str:
        return f"{self.kind} {self.namespace}/{name}"

    def get_or_create(self, job: Any) -> tuple[str, bool]:
        """(name, created): the existing job of that name if a previous attempt created it, else a new one."""
        name = self.name_of(job)
        if self.get(name) is not None:
            self.log(f"{self.where(name)} exists (a retried step): following it")
            return name, False
        self.create(job)
        self.log(f"created {self.where(name)}")
        return name, True

    def run(self, job: Any, delete_on_success: bool = False) -> Any:
        name, _ = self.get_or_create(job)
        final = self.wait(name)
        if delete_on_success:
            self.delete(name)
        return final

    def report_phase(self, name: str, phase: str, previous: str | None, message: str = "") -> str:
        if phase != previous:
            self.log(f"{self.kind} {name}: {phase}" + (f" ({message})" if message else ""))
        return phase

    def failed(self, name: str, message: str, tail: list[str], events: Iterable[str] = ()) -> LaunchError:
        text = f"{self.where(name)} failed: {message}\nlast log lines:\n" + "\n".join(tail)
        events = list(events)
        return LaunchError(text + ("\nevents:\n" + "\n".join(events) if events else ""))

    def timed_out(self, name: str, phase: str) -> LaunchError:
        return LaunchError(
            f"{self.where(name)} still {phase} after {self.timeout_seconds:.0f} s; it keeps running: follow it "
            f"with `kubectl -n {self.namespace} get {self.resource} {name}`"
        )

    def disappeared(self, name: str) -> LaunchError:
        return LaunchError(f"{self.where(name)} disappeared while waiting (deleted?)")


class PyTorchJobLauncher(JobLauncher):
    """PyTorchJobs of the Kubeflow training operator (v1), through the Kubernetes API."""

    kind, resource = "PyTorchJob", "pytorchjob"

    def __init__(self, api_client: k8s.ApiClient, namespace: str, **kwargs: Any) -> None:
        super().__init__(namespace, **kwargs)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)

    @staticmethod
    def name_of(job: Any) -> str:
        return job.metadata.name

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise LaunchError(f"reading {self.where(name)} failed: HTTP {error.status} {error.reason}") from None

    def create(self, job: Any) -> None:
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, to_wire(job))
        except ApiException as error:
            raise LaunchError(
                f"creating {self.where(self.name_of(job))} failed: HTTP {error.status} {error.reason}; is the "
                "training operator installed and may this service account create pytorchjobs?"
            ) from None

    def trainer_log(self, name: str) -> tuple[str | None, list[str]]:
        selector = f"training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master"
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
            if not pods:
                return None, []
            pod = pods[0].metadata.name
            text = self.core.read_namespaced_pod_log(pod, self.namespace, container=CONTAINER)
        except ApiException:
            return None, []  # the pod may not exist yet, or be gone: logs are best effort
        return pod, text.splitlines()

    def wait(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        follower, phase = LogFollower(self.log), None
        while True:
            job = self.get(name)
            if job is None:
                raise self.disappeared(name)
            pod, lines = self.trainer_log(name)
            if pod:
                follower.update(pod, lines)
            current, message = latest_condition(job)
            phase = self.report_phase(name, current, phase, message)
            if current == "Succeeded":
                return job
            if current == "Failed":
                raise self.failed(name, message, follower.tail())
            if time.monotonic() >= deadline:
                raise self.timed_out(name, current)
            time.sleep(self.poll_seconds)

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise LaunchError(f"deleting {self.where(name)}: HTTP {error.status}") from None


def api_client() -> k8s.ApiClient:
    """A client for the cluster this runs in, or the one the kubeconfig names."""
    return k8s.ApiClient(kube_configuration())
