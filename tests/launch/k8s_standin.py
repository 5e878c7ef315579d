"""A stand-in Kubernetes API server on 127.0.0.1: it stores PyTorchJobs, walks them through scripted
status transitions on each read, and serves each job's pods and the Master pod's growing log.

It implements only the endpoints the launcher calls, with the real paths and JSON shapes:

- ``POST|GET|DELETE /apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs[/{name}]`` (GET without a name lists)
- ``GET /api/v1/namespaces/{ns}/pods?labelSelector=...``: the pods the training operator would create
  (``{job}-master-0``, ``{job}-worker-{i}``, labelled as it labels them), filtered by the selector with
  the API server's rules (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``,
  all of them ANDed); a selector it cannot parse is a 400, as on a real server
- ``GET /api/v1/namespaces/{ns}/pods/{pod}/log`` (the Master's; 404 for a pod that does not exist)
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

JOB = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
REQUIREMENT = re.compile(
    rf"^\s*(?:(?P<absent>!)\s*(?P<nkey>{KEY})|(?P<key>{KEY})\s*(?:(?P<op>==|!=|=)\s*(?P<value>[-A-Za-z0-9_.]*)"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
)


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


class StandInCluster:
    def __init__(self, phases: list[str], failure_message: str = "") -> None:
        self.phases, self.failure_message = phases, failure_message
        self.jobs: dict[str, dict] = {}
        self.reads: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                cluster.requests.append(("POST", self.path))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = body["metadata"]["name"]
                if name in cluster.jobs:
                    return self._send(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
                cluster.jobs[name] = body
                self._send(201, body)

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                cluster.requests.append(("GET", path))
                if match := JOB.match(path):
                    name = match.group(2)
                    if name is None:
                        return self._send(200, {"kind": "PyTorchJobList", "items": list(cluster.jobs.values())})
                    if name not in cluster.jobs:
                        return self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
                    return self._send(200, cluster.read_job(name))
                if match := PODS.match(path):
                    selector = parse_qs(urlparse(self.path).query).get("labelSelector", [""])[0]
                    try:
                        wanted = selector_matcher(selector)
                    except ValueError as error:
                        return self._send(400, {"kind": "Status", "reason": "BadRequest", "message": str(error)})
                    items = [pod for pod in cluster.pods(match.group(1)) if wanted(pod["metadata"]["labels"])]
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
                if match := LOG.match(path):
                    pod = match.group(2)
                    if pod not in {p["metadata"]["name"] for p in cluster.pods(match.group(1))}:
                        return self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
                    name = pod.removesuffix("-master-0")
                    lines = [f"step {i * 10} loss {0.7 - i * 0.01:.2f}" for i in range(cluster.reads.get(name, 0))]
                    return self._send(200, "\n".join(lines) + "\n", "text/plain")
                self._send(404, {"kind": "Status", "code": 404})

            def do_DELETE(self) -> None:
                cluster.requests.append(("DELETE", self.path))
                match = JOB.match(urlparse(self.path).path)
                cluster.jobs.pop(match.group(2), None)
                self._send(200, {"kind": "Status", "status": "Success"})

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def pods(self, namespace: str) -> list[dict]:
        everywhere = [pod for job in list(self.jobs.values()) for pod in operator_pods(job)]
        return [pod for pod in everywhere if pod["metadata"]["namespace"] == namespace]

    def read_job(self, name: str) -> dict:
        index = min(self.reads.get(name, 0), len(self.phases) - 1)
        self.reads[name] = self.reads.get(name, 0) + 1
        phase = self.phases[index]
        message = self.failure_message if phase == "Failed" else f"PyTorchJob {name} is {phase.lower()}."
        job = dict(self.jobs[name])
        job["status"] = {
            "conditions": [{"type": phase, "status": "True", "reason": f"PyTorchJob{phase}", "message": message}]
        }
        return job

    def close(self) -> None:
        self.server.shutdown()
