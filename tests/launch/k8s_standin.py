"""A stand-in Kubernetes API server on 127.0.0.1 for the launchers and the ``kubeflow`` SDK: it stores
PyTorchJobs (training operator v1) and TrainJobs (Kubeflow Trainer v2), walks them through scripted
status transitions on each read, and serves the pods the operators would create and their logs.

It implements only the endpoints the launchers and ``kubeflow.trainer.TrainerClient`` call, with the
real paths and JSON shapes:

- ``POST|GET|DELETE /apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs[/{name}]`` (GET without a name lists)
- ``POST|GET|DELETE /apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs[/{name}]``; a posted
  TrainJob must deserialize into the ``kubeflow-trainer-api`` model (else 422, as the CRD schema would);
  stored objects get the server's metadata (namespace, uid, creationTimestamp, ...)
- ``GET /apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes[/{name}]`` (the runtimes given) and
  ``.../namespaces/{ns}/trainingruntimes[/{name}]`` (none: 404, empty list)
- ``GET /api/v1/namespaces/kubeflow-system/configmaps/kubeflow-trainer-public`` (the Trainer's version)
- ``GET /api/v1/namespaces/{ns}/pods?labelSelector=...``: for a PyTorchJob ``{job}-master-0`` and
  ``{job}-worker-{i}`` labelled as the training operator labels them; for a TrainJob the JobSet's
  ``{job}-node-0-{i}-{5 chars}`` pods, labelled as JobSet labels them, with the pod spec the Trainer
  makes from the runtime and the TrainJob (:func:`trainer_pod`) and a phase that follows the job.
  Selectors follow the API server's rules (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``,
  ``k notin (a,b)``, ANDed); one that does not parse is a 400
- ``GET /api/v1/namespaces/{ns}/pods/{pod}/log[?container=]``: the trainer's growing log (404 for a pod
  that does not exist; 400 for a container the pod lacks or a pod still pending, as on a real server)
- ``GET /api/v1/namespaces/{ns}/events``: events of the TrainJobs (created; failed)

Phases of a TrainJob: ``Created`` (pods pending), ``Running``, ``Restarting`` (the JobSet recreates
every node after a node loss: new pod names, a log that starts again), ``Complete``, ``Failed``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from kubeflow_trainer_api import models

JOB = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/]+))?$")
TRAINER = r"/apis/trainer\.kubeflow\.org/v1alpha1"
TRAINJOB = re.compile(rf"^{TRAINER}/namespaces/([^/]+)/trainjobs(?:/([^/]+))?$")
RUNTIME = re.compile(rf"^{TRAINER}/namespaces/([^/]+)/trainingruntimes(?:/([^/]+))?$")
CLUSTER_RUNTIME = re.compile(rf"^{TRAINER}/clustertrainingruntimes(?:/([^/]+))?$")
CONFIG_MAP = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps/([^/]+)$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
EVENTS = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")
KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
REQUIREMENT = re.compile(
    rf"^\s*(?:(?P<absent>!)\s*(?P<nkey>{KEY})|(?P<key>{KEY})\s*(?:(?P<op>==|!=|=)\s*(?P<value>[-A-Za-z0-9_.]*)"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
)
POD_PHASE = {
    "Created": "Pending",
    "Restarting": "Pending",
    "Running": "Running",
    "Complete": "Succeeded",
    "Failed": "Failed",
}
NODE = "node"
MASTER_PORT = 29400


def selector_matcher(selector: str):
    """A predicate on a labels dict for a Kubernetes label selector; ValueError when it does not parse."""
    checks = []
    for part in re.findall(r"(?:[^,(]|\([^)]*\))+", selector):
        match = REQUIREMENT.match(part)
        if not match:
            raise ValueError(f"unable to parse requirement: {part!r}")
        if match["absent"]:
            checks.append(lambda labels, k=match["nkey"]: k not in labels)
        elif match["op"]:
            equal = match["op"] != "!="
            checks.append(lambda labels, k=match["key"], v=match["value"], eq=equal: (labels.get(k) == v) == eq)
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",")}
            inside = match["setop"] == "in"
            checks.append(lambda labels, k=match["key"], vs=values, i=inside: (labels.get(k) in vs) == i)
        else:
            checks.append(lambda labels, k=match["key"]: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def operator_pods(job: dict) -> list[dict]:
    """The pods the training operator makes for a PyTorchJob, with its labels and the template's."""
    name, namespace = job["metadata"]["name"], job["metadata"].get("namespace", "default")
    pods = []
    for replica_type, spec in job["spec"]["pytorchReplicaSpecs"].items():
        for index in range(spec.get("replicas", 1)):
            labels = {
                **spec["template"].get("metadata", {}).get("labels", {}),
                "training.kubeflow.org/operator-name": "pytorchjob-controller",
                "training.kubeflow.org/job-name": name,
                "training.kubeflow.org/replica-type": replica_type.lower(),
                "training.kubeflow.org/replica-index": str(index),
            }
            if replica_type == "Master":
                labels["training.kubeflow.org/job-role"] = "master"
            pod_name = f"{name}-{replica_type.lower()}-{index}"
            pods.append({"metadata": {"name": pod_name, "namespace": namespace, "labels": labels}})
    return pods


def _upsert(items: list[dict], updates: list[dict], key: str = "name") -> list[dict]:
    """Merge lists keyed by ``key`` as the Trainer does (an update replaces the item of the same key)."""
    merged = {item[key]: item for item in items}
    merged.update({item[key]: item for item in updates})
    return list(merged.values())


def trainer_pod(runtime: dict, trainjob: dict) -> dict:
    """The Pod the Trainer creates for one trainer node of ``trainjob``: the runtime's ``node``
    template, with the TrainJob's ``trainer`` on its ``node`` container, its runtime patches applied
    (lists merged by name, other fields replaced), and the torch plugin's ``PET_*`` settings."""
    (node_job,) = [j for j in runtime["spec"]["template"]["spec"]["replicatedJobs"] if j["name"] == NODE]
    template = copy.deepcopy(node_job["template"]["spec"]["template"])
    metadata, spec = template.setdefault("metadata", {}), template["spec"]
    container = next(c for c in spec["containers"] if c["name"] == NODE)
    trainer = trainjob["spec"].get("trainer") or {}
    for field in ("image", "command", "args"):
        if field in trainer:
            container[field] = trainer[field]
    if "resourcesPerNode" in trainer:
        container["resources"] = trainer["resourcesPerNode"]
    container["env"] = _upsert(container.get("env", []), trainer.get("env", []))
    for patch in trainjob["spec"].get("runtimePatches") or []:
        for job in patch.get("trainingRuntimeSpec", {}).get("template", {}).get("spec", {}).get("replicatedJobs", []):
            if job["name"] != NODE:
                continue
            pod = job.get("template", {}).get("spec", {}).get("template", {})
            for key in ("labels", "annotations"):
                metadata[key] = {**metadata.get(key, {}), **pod.get("metadata", {}).get(key, {})}
            for key, value in pod.get("spec", {}).items():
                if key == "containers":
                    for change in value:
                        target = next(c for c in spec["containers"] if c["name"] == change["name"])
                        target["env"] = _upsert(target.get("env", []), change.get("env", []))
                        target["volumeMounts"] = _upsert(target.get("volumeMounts", []), change.get("volumeMounts", []))
                        if "securityContext" in change:
                            target["securityContext"] = change["securityContext"]
                elif key == "volumes":
                    spec["volumes"] = _upsert(spec.get("volumes", []), value)
                else:
                    spec[key] = value
    nodes = trainer.get("numNodes") or runtime["spec"]["mlPolicy"].get("numNodes", 1)
    name = trainjob["metadata"]["name"]
    container["env"] = _upsert(
        container["env"],
        [
            {"name": "PET_NNODES", "value": str(nodes)},
            {"name": "PET_NPROC_PER_NODE", "value": "auto"},
            {
                "name": "PET_NODE_RANK",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
                },
            },
            {"name": "PET_MASTER_ADDR", "value": f"{name}-{NODE}-0-0.{name}"},
            {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
        ],
    )
    container["ports"] = [{"containerPort": MASTER_PORT}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored(body: dict, namespace: str) -> dict:
    """``body`` as the API server stores it: in its namespace (the request's if it names none), with the
    server-set metadata."""
    stored = copy.deepcopy(body)
    stored["metadata"].update(
        namespace=body["metadata"].get("namespace") or namespace,
        uid=str(uuid.uuid4()),
        resourceVersion="1",
        generation=1,
        creationTimestamp=_now(),
    )
    return stored


class StandInCluster:
    def __init__(
        self,
        phases: list[str],
        failure_message: str = "",
        runtimes: list[dict] = (),
        trainer_version: str | None = "v2.3.0",
        on_complete: Callable[[dict], None] | None = None,
    ) -> None:
        self.phases, self.failure_message, self.on_complete = phases, failure_message, on_complete
        self.trainer_version = trainer_version
        self.runtimes = {r["metadata"]["name"]: r for r in runtimes}
        self.jobs: dict[str, dict] = {}  # PyTorchJobs
        self.trainjobs: dict[str, dict] = {}
        self.reads: dict[str, int] = {}
        self.phase: dict[str, str] = {}  # a TrainJob's phase at its latest read
        self.attempt: dict[str, tuple[int, int]] = {}  # a TrainJob's (restart attempt, reads when it began)
        self.completed: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str = "") -> None:
                self._send(
                    code, {"kind": "Status", "status": "Failure", "reason": reason, "message": message, "code": code}
                )

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                cluster.requests.append(("POST", path))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if match := JOB.match(path):
                    store, namespace = cluster.jobs, match.group(1)
                elif match := TRAINJOB.match(path):
                    store, namespace = cluster.trainjobs, match.group(1)
                    try:
                        models.TrainerV1alpha1TrainJob.from_dict(body)
                    except Exception as error:  # any schema violation
                        return self._status(422, "Invalid", f"TrainJob is invalid: {error}")
                else:
                    return self._status(404, "NotFound")
                name = body["metadata"]["name"]
                with cluster.lock:
                    if name in store:
                        return self._status(409, "AlreadyExists", f"{name} already exists")
                    store[name] = _stored(body, namespace)
                self._send(201, store[name])

            def do_GET(self) -> None:
                url = urlparse(self.path)
                path, query = url.path, parse_qs(url.query)
                cluster.requests.append(("GET", path))
                if match := JOB.match(path):
                    name = match.group(2)
                    if name is None:
                        return self._send(200, {"kind": "PyTorchJobList", "items": list(cluster.jobs.values())})
                    if name not in cluster.jobs:
                        return self._status(404, "NotFound")
                    return self._send(200, cluster.read_job(name))
                if match := TRAINJOB.match(path):
                    namespace, name = match.groups()
                    if name is None:
                        items = [j for j in cluster.trainjobs.values() if j["metadata"]["namespace"] == namespace]
                        return self._send(200, {"apiVersion": "trainer.kubeflow.org/v1alpha1", "items": items})
                    if name not in cluster.trainjobs:
                        return self._status(404, "NotFound", f'trainjobs "{name}" not found')
                    return self._send(200, cluster.read_trainjob(name))
                if match := CLUSTER_RUNTIME.match(path):
                    name = match.group(1)
                    if name is None:
                        return self._send(200, {"items": list(cluster.runtimes.values())})
                    if name not in cluster.runtimes:
                        return self._status(404, "NotFound", f'clustertrainingruntimes "{name}" not found')
                    return self._send(200, cluster.runtimes[name])
                if match := RUNTIME.match(path):
                    if match.group(2) is None:
                        return self._send(200, {"items": []})
                    return self._status(404, "NotFound", f'trainingruntimes "{match.group(2)}" not found')
                if match := CONFIG_MAP.match(path):
                    if match.groups() == ("kubeflow-system", "kubeflow-trainer-public") and cluster.trainer_version:
                        return self._send(200, {"data": {"kubeflow_trainer_version": cluster.trainer_version}})
                    return self._status(404, "NotFound")
                if match := PODS.match(path):
                    try:
                        wanted = selector_matcher(query.get("labelSelector", [""])[0])
                    except ValueError as error:
                        return self._status(400, "BadRequest", str(error))
                    items = [pod for pod in cluster.pods(match.group(1)) if wanted(pod["metadata"]["labels"])]
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
                if match := LOG.match(path):
                    return self._log(match.group(1), match.group(2), query.get("container", [None])[0])
                if match := EVENTS.match(path):
                    return self._send(200, {"kind": "EventList", "apiVersion": "v1", "items": cluster.events(match[1])})
                self._status(404, "NotFound")

            def _log(self, namespace: str, pod_name: str, container: str | None) -> None:
                pods = {p["metadata"]["name"]: p for p in cluster.pods(namespace)}
                if pod_name not in pods:
                    return self._status(404, "NotFound", f'pods "{pod_name}" not found')
                pod = pods[pod_name]
                if "spec" not in pod:  # a PyTorchJob's master
                    name = pod_name.removesuffix("-master-0")
                    lines = [f"step {i * 10} loss {0.7 - i * 0.01:.2f}" for i in range(cluster.reads.get(name, 0))]
                    return self._send(200, "\n".join(lines) + "\n", "text/plain")
                if container not in {c["name"] for c in pod["spec"]["containers"]}:
                    return self._status(400, "BadRequest", f"container {container} is not valid for pod {pod_name}")
                if pod["status"]["phase"] == "Pending":
                    return self._status(400, "BadRequest", f'container "{container}" in pod "{pod_name}" is waiting')
                name = pod["metadata"]["labels"]["jobset.sigs.k8s.io/jobset-name"]
                attempt, since = cluster.attempt.get(name, (0, 0))
                lines = [f"restart {attempt}: resumed from the latest complete checkpoint"] if attempt else []
                lines += [f"step {i * 10} loss {0.7 - i * 0.01:.2f}" for i in range(cluster.reads[name] - since)]
                self._send(200, "\n".join(lines) + "\n", "text/plain")

            def do_DELETE(self) -> None:
                path = urlparse(self.path).path
                cluster.requests.append(("DELETE", path))
                match = JOB.match(path) or TRAINJOB.match(path)
                store = cluster.jobs if JOB.match(path) else cluster.trainjobs
                if match is None or match.group(2) not in store:
                    return self._status(404, "NotFound")
                store.pop(match.group(2))
                self._send(200, {"kind": "Status", "status": "Success"})

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def kubeconfig(self, namespace: str = "default") -> dict:
        """A kubeconfig whose current context is this server (and ``namespace``)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u", "namespace": namespace}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
        }

    def _next_phase(self, name: str) -> str:
        index = min(self.reads.get(name, 0), len(self.phases) - 1)
        self.reads[name] = self.reads.get(name, 0) + 1
        return self.phases[index]

    def read_job(self, name: str) -> dict:
        phase = self._next_phase(name)
        message = self.failure_message if phase == "Failed" else f"PyTorchJob {name} is {phase.lower()}."
        job = copy.deepcopy(self.jobs[name])
        job["status"] = {
            "conditions": [{"type": phase, "status": "True", "reason": f"PyTorchJob{phase}", "message": message}]
        }
        return job

    def read_trainjob(self, name: str) -> dict:
        with self.lock:
            phase = self._next_phase(name)
            if phase == "Restarting" and self.phase.get(name) != "Restarting":
                self.attempt[name] = (self.attempt.get(name, (0, 0))[0] + 1, self.reads[name])
            self.phase[name] = phase
            job = copy.deepcopy(self.trainjobs[name])
        conditions = []
        if phase == "Complete":
            conditions.append({"type": "Complete", "status": "True", "reason": "JobSetCompleted"})
            conditions[-1]["message"] = "jobset completed successfully"
            if self.on_complete and name not in self.completed:
                self.completed.add(name)
                self.on_complete(job)
        if phase == "Failed":
            conditions.append(
                {"type": "Failed", "status": "True", "reason": "JobSetFailed", "message": self.failure_message}
            )
        for condition in conditions:
            condition["lastTransitionTime"] = _now()
        job["status"] = {"conditions": conditions} if conditions else {}
        return job

    def trainjob_pods(self, job: dict) -> list[dict]:
        """The JobSet's pods of a TrainJob: one per node, named and labelled as JobSet does."""
        name = job["metadata"]["name"]
        runtime = self.runtimes[job["spec"]["runtimeRef"]["name"]]
        pod = trainer_pod(runtime, job)
        nodes = int(next(e["value"] for e in pod["spec"]["containers"][0]["env"] if e["name"] == "PET_NNODES"))
        attempt = self.attempt.get(name, (0, 0))[0]
        pods = []
        for index in range(nodes):
            suffix = hashlib.sha256(f"{name}/{attempt}/{index}".encode()).hexdigest()[:5]
            labels = {
                **pod["metadata"].get("labels", {}),
                "jobset.sigs.k8s.io/jobset-name": name,
                "jobset.sigs.k8s.io/replicatedjob-name": NODE,
                "jobset.sigs.k8s.io/job-index": "0",
                "jobset.sigs.k8s.io/restart-attempt": str(attempt),
                "batch.kubernetes.io/job-completion-index": str(index),
                "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
            }
            metadata = {
                "name": f"{name}-{NODE}-0-{index}-{suffix}",
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "creationTimestamp": job["metadata"]["creationTimestamp"],
            }
            phase = POD_PHASE[self.phase.get(name, "Created")]
            pods.append({"metadata": metadata, "spec": pod["spec"], "status": {"phase": phase}})
        return pods

    def pods(self, namespace: str) -> list[dict]:
        everywhere = [pod for job in list(self.jobs.values()) for pod in operator_pods(job)]
        everywhere += [pod for job in list(self.trainjobs.values()) for pod in self.trainjob_pods(job)]
        return [pod for pod in everywhere if pod["metadata"]["namespace"] == namespace]

    def events(self, namespace: str) -> list[dict]:
        def event(kind: str, name: str, kind_of_event: str, reason: str, message: str) -> dict:
            return {
                "metadata": {"name": f"{name}.{uuid.uuid4().hex[:8]}", "namespace": namespace},
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
                "type": kind_of_event,
                "reason": reason,
                "message": message,
                "firstTimestamp": _now(),
            }

        found = []
        for name, job in list(self.trainjobs.items()):
            if job["metadata"]["namespace"] != namespace:
                continue
            found.append(event("TrainJob", name, "Normal", "JobSetCreated", f"JobSet {name} created"))
            if self.phase.get(name) == "Failed":
                pod = self.trainjob_pods(job)[0]["metadata"]["name"]
                found.append(event("Pod", pod, "Warning", "OOMKilling", "container node exceeded its memory limit"))
        return found

    def close(self) -> None:
        self.server.shutdown()
