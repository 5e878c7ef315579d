"""A stand-in Kubernetes API server on 127.0.0.1: it stores PyTorchJobs, walks them through scripted
status transitions on each read, and serves the Master pod and its growing log.

It implements only the endpoints the launcher calls, with the real paths and JSON shapes:

- ``POST|GET|DELETE /apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs[/{name}]`` (GET without a name lists)
- ``GET /api/v1/namespaces/{ns}/pods?labelSelector=...``
- ``GET /api/v1/namespaces/{ns}/pods/{pod}/log``
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

JOB = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


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
                if PODS.match(path):
                    items = [{"metadata": {"name": f"{n}-master-0"}} for n in cluster.jobs]
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "items": items[:1]})
                if match := LOG.match(path):
                    name = match.group(2).removesuffix("-master-0")
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
