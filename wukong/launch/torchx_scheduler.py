"""A torchx scheduler named ``kubeflow`` that runs an AppDef as a Kubeflow training job.

torchx's own ``kubernetes`` scheduler needs Volcano; clusters with Kubeflow have its training
operators instead. ``-cfg api=trainjob`` submits a Kubeflow Trainer v2 TrainJob (through the
``kubeflow`` SDK) naming the runtime ``-cfg runtime=`` (default ``wukong-torchrec``);
``api=pytorchjob`` (the default, for clusters that still run the v1 training operator) a PyTorchJob.
The (single-role, torchrun) AppDef becomes the job that :func:`wukong.launch.build_trainjob` or
:func:`wukong.launch.build_pytorchjob` builds; ``--dryrun`` prints its YAML, and ``status``, ``log``,
``cancel`` and ``list`` follow it. App ids are ``<namespace>:<name>`` for PyTorchJobs and
``<namespace>:trainjob:<name>`` for TrainJobs. Registered through the ``torchx.schedulers`` entry point.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml
from torchx.schedulers.api import DescribeAppResponse, ListAppResponse, Scheduler, Stream
from torchx.specs import AppDef, AppDryRunInfo, AppState, CfgVal, ReplicaStatus, Role, RoleStatus, runopts

from wukong.launch import pytorchjob, trainjob
from wukong.launch.launcher import JobLauncher, PyTorchJobLauncher, api_client, latest_condition
from wukong.launch.resources import GPU_TOLERATION, JobResources, parse_node_selector
from wukong.launch.submit import APIS

STATES = {
    "Pending": AppState.PENDING,
    "Created": AppState.SUBMITTED,
    "Running": AppState.RUNNING,
    "Restarting": AppState.RUNNING,
    "Succeeded": AppState.SUCCEEDED,
    "Complete": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
}
TRAINJOB = "trainjob:"


def _flag(args: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def resources_from_app(app: AppDef, cfg: Mapping[str, CfgVal]) -> tuple[list[str], JobResources]:
    """The ``wukong.train`` arguments and the job resources an AppDef asks for."""
    if len(app.roles) != 1:
        raise ValueError("the kubeflow scheduler runs single-role (torchrun) apps")
    role: Role = app.roles[0]
    args = [str(a) for a in role.args]
    if role.entrypoint in ("bash", "sh") and args[:1] == ["-c"]:  # dist.torchrun wraps its command in bash -c
        args = shlex.split(args[1])
    if "wukong.train" not in args:
        raise ValueError("the kubeflow scheduler runs `-m wukong.train` apps (use the wukong.train component)")
    train_args = args[args.index("wukong.train") + 1 :]
    nproc = int(_flag(args, "--nproc_per_node", _flag(args, "--nproc-per-node", "1")))
    resources = JobResources(
        image=role.image,
        namespace=str(cfg.get("namespace") or "default"),
        nodes=role.num_replicas,
        nproc_per_node=nproc,
        gpus_per_node=max(role.resource.gpu, 0),
        cpu=str(max(role.resource.cpu, 1)),
        memory=f"{max(role.resource.memMB, 1024)}Mi",
        node_selector=parse_node_selector(str(cfg.get("node_selector") or "")),
        tolerations=[dict(GPU_TOLERATION)] if role.resource.gpu else [],
        priority_class=str(cfg["priority_class"]) if cfg.get("priority_class") else None,
        service_account=str(cfg.get("service_account") or "wukong"),
        queue=str(cfg["queue"]) if cfg.get("queue") else None,
        max_restarts=role.max_retries,
    )
    return train_args, resources


def _api(cfg: Mapping[str, CfgVal] | None) -> str:
    api = str((cfg or {}).get("api") or "pytorchjob")
    if api not in APIS:
        raise ValueError(f"-cfg api must be one of {', '.join(APIS)}, got {api!r}")
    return api


class KubeflowScheduler(Scheduler[dict[str, CfgVal]]):
    def __init__(self, session_name: str, api_client: Any = None) -> None:
        super().__init__("kubeflow", session_name)
        self._api_client = api_client

    def _launcher(self, namespace: str, api: str) -> JobLauncher:
        if api == "trainjob":
            from wukong.launch.trainjob_launcher import TrainJobLauncher

            configuration = self._api_client.configuration if self._api_client else None
            return TrainJobLauncher.connect(namespace, configuration, log=lambda _: None)
        return PyTorchJobLauncher(self._api_client or api_client(), namespace, log=lambda _: None)

    def _run_opts(self) -> runopts:
        opts = runopts()
        opts.add("api", type_=str, default="pytorchjob", help="trainjob (Kubeflow Trainer v2) or pytorchjob (v1)")
        opts.add("namespace", type_=str, default="default", help="namespace of the job")
        opts.add("runtime", type_=str, default=trainjob.RUNTIME, help="the TrainJob's (Cluster)TrainingRuntime")
        opts.add("service_account", type_=str, default="wukong", help="service account of the pods")
        opts.add("priority_class", type_=str, default=None, help="priority class of the pods (PyTorchJob only)")
        opts.add("node_selector", type_=str, default=None, help="key=value[,key=value] node labels")
        opts.add("queue", type_=str, default=None, help="Kueue LocalQueue of the job")
        return opts

    def _submit_dryrun(self, app: AppDef, cfg: dict[str, CfgVal]) -> AppDryRunInfo:
        train_args, resources = resources_from_app(app, cfg)
        run_id = f"{app.name}-{self.session_name}-{datetime.now():%Y%m%d%H%M%S}"
        if _api(cfg) == "trainjob":
            runtime = str(cfg.get("runtime") or trainjob.RUNTIME)
            request = trainjob.build_trainjob(trainjob.job_name(run_id), train_args, resources, runtime)
            return AppDryRunInfo(request, trainjob.to_yaml)
        wire = pytorchjob.to_wire(pytorchjob.build_pytorchjob(pytorchjob.job_name(run_id), train_args, resources))
        return AppDryRunInfo(wire, lambda request: yaml.safe_dump(request, sort_keys=False))

    def schedule(self, dryrun_info: AppDryRunInfo) -> str:
        request = dryrun_info.request
        if isinstance(request, trainjob.TrainJobRequest):
            self._launcher(request.namespace, "trainjob").create(request)
            return f"{request.namespace}:{TRAINJOB}{request.name}"
        namespace = request["metadata"]["namespace"]
        launcher = self._launcher(namespace, "pytorchjob")
        created = launcher.custom.create_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "pytorchjobs", request
        )
        return f"{namespace}:{created['metadata']['name']}"

    @staticmethod
    def _split(app_id: str) -> tuple[str, str, str]:
        """(namespace, api, name) of an app id."""
        namespace, _, name = app_id.partition(":")
        if name.startswith(TRAINJOB):
            return namespace, "trainjob", name.removeprefix(TRAINJOB)
        return namespace, "pytorchjob", name

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        namespace, api, name = self._split(app_id)
        job = self._launcher(namespace, api).get(name)
        if job is None:
            return None
        phase, message = (job.status, "") if api == "trainjob" else latest_condition(job)
        state = STATES.get(phase, AppState.UNKNOWN)
        role = "node" if api == "trainjob" else pytorchjob.CONTAINER
        return DescribeAppResponse(
            app_id=app_id,
            state=state,
            msg=message,
            roles=[Role(name=role, image="")],
            roles_statuses=[RoleStatus(role, [ReplicaStatus(0, state, role, "")])],
        )

    def log_iter(
        self,
        app_id: str,
        role_name: str,
        k: int = 0,
        regex: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        should_tail: bool = False,
        streams: Stream | None = None,
    ) -> Iterable[str]:
        namespace, api, name = self._split(app_id)
        _, lines = self._launcher(namespace, api).trainer_log(name)
        return [line for line in lines if regex is None or re.search(regex, line)]

    def _cancel_existing(self, app_id: str) -> None:
        namespace, api, name = self._split(app_id)
        self._launcher(namespace, api).delete(name)

    def list(self, cfg: Mapping[str, CfgVal] | None = None) -> list[ListAppResponse]:
        namespace, api = str((cfg or {}).get("namespace") or "default"), _api(cfg)
        launcher = self._launcher(namespace, api)
        if api == "trainjob":
            return [
                ListAppResponse(app_id=f"{namespace}:{TRAINJOB}{j.name}", state=STATES.get(j.status, AppState.UNKNOWN))
                for j in launcher.client.list_jobs()
            ]
        jobs = launcher.custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")
        return [
            ListAppResponse(
                app_id=f"{namespace}:{j['metadata']['name']}",
                state=STATES.get(latest_condition(j)[0], AppState.UNKNOWN),
            )
            for j in jobs.get("items", [])
        ]


def create_scheduler(session_name: str, **kwargs: Any) -> KubeflowScheduler:
    return KubeflowScheduler(session_name)
