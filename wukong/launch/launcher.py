"""Run a PyTorchJob to completion: get-or-create, wait (days if need be), stream the Master's log,
fail loudly when the job fails.

The public KFP PyTorchJob launcher stops waiting after 10 minutes and reports failed jobs as
succeeded; this one waits up to ``timeout_seconds`` (default two weeks), raises with the job's
conditions and the last log lines when it fails, and finds the job it created earlier when a
pipeline step is retried (the name is deterministic).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from wukong.launch.pytorchjob import JobResources, build_pytorchjob, job_name, to_wire

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
TERMINAL = ("Succeeded", "Failed")
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class LaunchError(RuntimeError):
    """The job failed, or could not be created, or did not finish in time."""


def _condition(job: dict[str, Any]) -> tuple[str, str]:
    """(phase, message) from the job's latest true condition."""
    conditions = [c for c in job.get("status", {}).get("conditions") or [] if c.get("status") == "True"]
    if not conditions:
        return "Pending", ""
    latest = conditions[-1]
    return latest["type"], f"{latest.get('reason', '')}: {latest.get('message', '')}".strip(": ")


class PyTorchJobLauncher:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        poll_seconds: float = 15.0,
        timeout_seconds: float = 14 * 24 * 3600,
        log: Callable[[str], None] = print,
    ) -> None:
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.namespace, self.poll_seconds, self.timeout_seconds, self.log = (
            namespace,
            poll_seconds,
            timeout_seconds,
            log,
        )
        self._printed: dict[str, int] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise LaunchError(
                f"reading PyTorchJob {self.namespace}/{name} failed: HTTP {error.status} {error.reason}"
            ) from None

    def get_or_create(self, job) -> tuple[dict[str, Any], bool]:
        """The job named like ``job``: the existing one if a previous attempt created it, else a new one."""
        body = to_wire(job)
        name = body["metadata"]["name"]
        existing = self.get(name)
        if existing is not None:
            self.log(f"PyTorchJob {self.namespace}/{name} exists (a retried step): following it")
            return existing, False
        try:
            created = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        except ApiException as error:
            raise LaunchError(
                f"creating PyTorchJob {self.namespace}/{name} failed: HTTP {error.status} {error.reason}; is the "
                "training operator installed and may this service account create pytorchjobs?"
            ) from None
        self.log(f"created PyTorchJob {self.namespace}/{name}")
        return created, True

    def _master_log(self, name: str) -> list[str]:
        selector = f"training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master"
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
            if not pods:
                return []
            text = self.core.read_namespaced_pod_log(pods[0].metadata.name, self.namespace, container="pytorch")
        except ApiException:
            return []  # the pod may not exist yet, or be gone: logs are best effort
        return text.splitlines()

    def _stream(self, name: str) -> list[str]:
        lines = self._master_log(name)
        start = self._printed.get(name, 0)
        for line in lines[start:]:
            self.log(line)
        self._printed[name] = max(start, len(lines))
        return lines

    def wait(self, name: str) -> dict[str, Any]:
        """Poll until the job succeeds (returned) or fails or time runs out (LaunchError)."""
        deadline = time.monotonic() + self.timeout_seconds
        phase = None
        while True:
            job = self.get(name)
            if job is None:
                raise LaunchError(f"PyTorchJob {self.namespace}/{name} disappeared while waiting (deleted?)")
            lines = self._stream(name)
            current, message = _condition(job)
            if current != phase:
                self.log(f"PyTorchJob {name}: {current}" + (f" ({message})" if message else ""))
                phase = current
            if current == "Succeeded":
                return job
            if current == "Failed":
                tail = "\n".join(lines[-20:])
                raise LaunchError(f"PyTorchJob {self.namespace}/{name} failed: {message}\nlast log lines:\n{tail}")
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"PyTorchJob {self.namespace}/{name} still {current} after {self.timeout_seconds:.0f} s; it keeps "
                    f"running: follow it with `kubectl -n {self.namespace} get pytorchjob {name}`"
                )
            time.sleep(self.poll_seconds)

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise LaunchError(f"deleting PyTorchJob {self.namespace}/{name}: HTTP {error.status}") from None

    def run(self, job, delete_on_success: bool = False) -> dict[str, Any]:
        created, _ = self.get_or_create(job)
        name = created["metadata"]["name"]
        final = self.wait(name)
        if delete_on_success:
            self.delete(name)
        return final


def _api_client() -> k8s.ApiClient:
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG is read now (the client library reads it once, at import).
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return k8s.ApiClient()


def run_pytorchjob(train_args: list[str], nodes: int, nproc_per_node: int, gpus_per_node: int) -> dict[str, Any]:
    """What the pipeline's train step does with ``launcher=pytorchjob`` (inside a KFP pod).

    Image, namespace, node selector, priority class and wait bound come from the environment
    (``WUKONG_IMAGE``, ``WUKONG_NAMESPACE`` or the pod's namespace, ``WUKONG_NODE_SELECTOR``,
    ``WUKONG_PRIORITY_CLASS``, ``WUKONG_JOB_TIMEOUT_S``: the ``wukong-defaults`` ConfigMap); the job name
    from the run's output URI, so a retried step follows the job its first attempt created.
    """
    namespace = os.environ.get("WUKONG_NAMESPACE") or (
        NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "kubeflow"
    )
    selector = os.environ.get("WUKONG_NODE_SELECTOR", "")  # key=value[,key=value], e.g. from the ConfigMap
    resources = JobResources(
        image=os.environ.get("WUKONG_IMAGE", JobResources.image),
        namespace=namespace,
        nodes=nodes,
        nproc_per_node=gpus_per_node or nproc_per_node,
        gpus_per_node=gpus_per_node,
        node_selector=dict(item.split("=", 1) for item in selector.split(",") if "=" in item),
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] if gpus_per_node else [],
        priority_class=os.environ.get("WUKONG_PRIORITY_CLASS") or None,
    )
    output = train_args[train_args.index("--output") + 1]
    job = build_pytorchjob(job_name(output), train_args, resources)
    launcher = PyTorchJobLauncher(
        _api_client(),
        namespace,
        poll_seconds=float(os.environ.get("WUKONG_JOB_POLL_S", 15)),
        timeout_seconds=float(os.environ.get("WUKONG_JOB_TIMEOUT_S", 14 * 24 * 3600)),
    )
    return launcher.run(job, delete_on_success=os.environ.get("WUKONG_DELETE_JOB", "") == "1")
