"""A torchx scheduler named ``kubeflow`` that runs an AppDef as a PyTorchJob (training operator).

torchx's own ``kubernetes`` scheduler needs Volcano; clusters with Kubeflow have the training
operator instead. This scheduler turns the (single-role, torchrun) AppDef into the PyTorchJob that
:func:`wukong.launch.build_pytorchjob` builds, and supports ``--dryrun`` (prints the YAML),
``status``, ``log`` and ``cancel``. Registered through the ``torchx.schedulers`` entry point.
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

from wukong.launch.launcher import PyTorchJobLauncher, _api_client, _condition
from wukong.launch.pytorchjob import JobResources, build_pytorchjob, job_name, to_wire

STATES = {
    "Pending": AppState.PENDING,
    "Created": AppState.SUBMITTED,
    "Running": AppState.RUNNING,
    "Restarting": AppState.RUNNING,
    "Succeeded": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
}


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
    selector = dict(item.split("=", 1) for item in str(cfg.get("node_selector") or "").split(",") if "=" in item)
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] if role.resource.gpu else []
    resources = JobResources(
        image=role.image,
        namespace=str(cfg.get("namespace") or "default"),
        nodes=role.num_replicas,
        nproc_per_node=nproc,
        gpus_per_node=max(role.resource.gpu, 0),
        cpu=str(max(role.resource.cpu, 1)),
        memory=f"{max(role.resource.memMB, 1024)}Mi",
        node_selector=selector,
        tolerations=tolerations,
        priority_class=str(cfg["priority_class"]) if cfg.get("priority_class") else None,
        service_account=str(cfg.get("service_account") or "wukong"),
        max_restarts=role.max_retries,
    )
    return train_args, resources


class KubeflowScheduler(Scheduler[dict[str, CfgVal]]):
    def __init__(self, session_name: str, api_client: Any = None) -> None:
        super().__init__("kubeflow", session_name)
        self._api_client = api_client

    def _launcher(self, namespace: str):
        return PyTorchJobLauncher(self._api_client or _api_client(), namespace, log=lambda _: None)

    def _run_opts(self) -> runopts:
        opts = runopts()
        opts.add("namespace", type_=str, default="default", help="namespace of the PyTorchJob")
        opts.add("service_account", type_=str, default="wukong", help="service account of the pods")
        opts.add("priority_class", type_=str, default=None, help="priority class of the pods")
        opts.add("node_selector", type_=str, default=None, help="key=value[,key=value] node labels")
        return opts

    def _submit_dryrun(self, app: AppDef, cfg: dict[str, CfgVal]) -> AppDryRunInfo:
        train_args, resources = resources_from_app(app, cfg)
        job = build_pytorchjob(
            job_name(f"{app.name}-{self.session_name}-{datetime.now():%Y%m%d%H%M%S}"), train_args, resources
        )
        wire = to_wire(job)
        return AppDryRunInfo(wire, lambda request: yaml.safe_dump(request, sort_keys=False))

    def schedule(self, dryrun_info: AppDryRunInfo) -> str:
        request = dryrun_info.request
        namespace = request["metadata"]["namespace"]
        launcher = self._launcher(namespace)
        created = launcher.custom.create_namespaced_custom_object(
            "kubeflow.org", "v1", namespace, "pytorchjobs", request
        )
        return f"{namespace}:{created['metadata']['name']}"

    @staticmethod
    def _split(app_id: str) -> tuple[str, str]:
        namespace, _, name = app_id.partition(":")
        return namespace, name

    def describe(self, app_id: str) -> DescribeAppResponse | None:
        namespace, name = self._split(app_id)
        job = self._launcher(namespace).get(name)
        if job is None:
            return None
        phase, message = _condition(job)
        state = STATES.get(phase, AppState.UNKNOWN)
        roles = [Role(name="pytorch", image="")]
        return DescribeAppResponse(
            app_id=app_id,
            state=state,
            msg=message,
            roles=roles,
            roles_statuses=[RoleStatus("pytorch", [ReplicaStatus(0, state, "pytorch", "")])],
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
        namespace, name = self._split(app_id)
        lines = self._launcher(namespace)._master_log(name)
        return [line for line in lines if regex is None or re.search(regex, line)]

    def _cancel_existing(self, app_id: str) -> None:
        namespace, name = self._split(app_id)
        self._launcher(namespace).delete(name)

    def list(self, cfg: Mapping[str, CfgVal] | None = None) -> list[ListAppResponse]:
        namespace = str((cfg or {}).get("namespace") or "default")
        launcher = self._launcher(namespace)
        jobs = launcher.custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")
        return [
            ListAppResponse(
                app_id=f"{namespace}:{j['metadata']['name']}", state=STATES.get(_condition(j)[0], AppState.UNKNOWN)
            )
            for j in jobs.get("items", [])
        ]


def create_scheduler(session_name: str, **kwargs: Any) -> KubeflowScheduler:
    return KubeflowScheduler(session_name)
