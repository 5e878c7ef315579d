"""torchx: the wukong.train component (local_cwd really trains) and the kubeflow scheduler (PyTorchJob and
TrainJob)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from torchx.specs import AppState

from wukong.launch import JobResources, build_pytorchjob, build_trainjob, to_wire, trainjob
from wukong.launch.torchx_component import train
from wukong.launch.torchx_scheduler import KubeflowScheduler

from .k8s_standin import StandInCluster

VENV_BIN = str(Path(sys.executable).parent)


def torchx(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [f"{VENV_BIN}/torchx", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_dryrun_is_the_builders_pytorchjob() -> None:
    app = train(
        "--epochs",
        "2",
        data="s3://wukong/ds",
        output="s3://wukong/runs/a",
        j="3x8",
        gpu=8,
        cpu=32,
        memMB=256_000,
        image="registry/wukong:cuda",
    )
    info = KubeflowScheduler("s").submit_dryrun(app, {"namespace": "ml", "node_selector": "pool=h100"})
    expected = to_wire(
        build_pytorchjob(
            info.request["metadata"]["name"],
            [
                "--data",
                "s3://wukong/ds",
                "--output",
                "s3://wukong/runs/a",
                "--config",
                "default",
                "--model",
                "wukong",
                "--epochs",
                "2",
            ],
            JobResources(
                image="registry/wukong:cuda",
                namespace="ml",
                nodes=3,
                nproc_per_node=8,
                gpus_per_node=8,
                cpu="32",
                memory="256000Mi",
                node_selector={"pool": "h100"},
                tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            ),
        )
    )
    assert info.request == expected


def test_cli_dryrun_prints_a_pytorchjob() -> None:
    result = torchx(
        "run",
        "--dryrun",
        "-s",
        "kubeflow",
        "-cfg",
        "namespace=ml",
        "wukong.train",
        "--data",
        "s3://d",
        "--output",
        "s3://o",
        "-j",
        "2x2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    request = yaml.safe_load(result.stdout.split("=== SCHEDULER REQUEST ===", 1)[1])
    assert request["kind"] == "PyTorchJob" and request["metadata"]["namespace"] == "ml"
    assert request["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1


def test_schedule_status_log_cancel_against_the_stand_in_server() -> None:
    cluster = StandInCluster(["Created", "Running", "Succeeded"])
    configuration = k8s.Configuration()
    configuration.host = cluster.url
    try:
        scheduler = KubeflowScheduler("s", api_client=k8s.ApiClient(configuration))
        info = scheduler.submit_dryrun(train(data="d", output="o", j="1x2"), {"namespace": "ml"})
        app_id = scheduler.schedule(info)
        assert app_id == f"ml:{info.request['metadata']['name']}"
        states = [scheduler.describe(app_id).state for _ in range(3)]
        assert states == [AppState.SUBMITTED, AppState.RUNNING, AppState.SUCCEEDED]
        assert list(scheduler.log_iter(app_id, "pytorch"))[:2] == ["step 0 loss 0.70", "step 10 loss 0.69"]
        assert [a.app_id for a in scheduler.list({"namespace": "ml"})] == [app_id]
        scheduler.cancel(app_id)
        assert scheduler.describe(app_id) is None
    finally:
        cluster.close()


@pytest.mark.slow
def test_local_cwd_launch_trains(tmp_path: Path) -> None:
    from wukong.data.prepare import PrepareOptions, prepare
    from wukong.data.sources.synthetic import SyntheticSource

    data = str(tmp_path / "ds")
    prepare(SyntheticSource(rows=6_000, seed=2, cardinality=200), data, PrepareOptions())
    result = torchx(
        "run",
        "-s",
        "local_cwd",
        "wukong.train",
        "--data",
        data,
        "--output",
        str(tmp_path / "out"),
        "--config",
        "tiny",
        "-j",
        "1x2",
        "--",
        "--max-steps",
        "20",
        "--batch-size",
        "128",
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (tmp_path / "out" / "model.pt").exists()


def test_trainjob_dryrun_is_the_builders_trainjob() -> None:
    app = train("--epochs", "2", data="s3://wukong/ds", output="s3://wukong/runs/a", j="3x8", gpu=8, cpu=32,
                memMB=256_000, image="registry/wukong:cuda")  # fmt: skip
    cfg = {"api": "trainjob", "namespace": "ml", "node_selector": "pool=h100", "runtime": "wukong-torchrec-h100"}
    info = KubeflowScheduler("s").submit_dryrun(app, cfg)
    args = ["--data", "s3://wukong/ds", "--output", "s3://wukong/runs/a", "--config", "default", "--model", "wukong"]
    resources = JobResources(
        image="registry/wukong:cuda",
        namespace="ml",
        nodes=3,
        nproc_per_node=8,
        gpus_per_node=8,
        cpu="32",
        memory="256000Mi",
        node_selector={"pool": "h100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    expected = build_trainjob(info.request.name, [*args, "--epochs", "2"], resources, "wukong-torchrec-h100")
    assert trainjob.to_wire(info.request) == trainjob.to_wire(expected)
    assert yaml.safe_load(str(info)) == trainjob.to_wire(expected)  # what --dryrun prints


def test_cli_dryrun_prints_a_trainjob() -> None:
    result = torchx("run", "--dryrun", "-s", "kubeflow", "-cfg", "api=trainjob,namespace=ml", "wukong.train",
                    "--data", "s3://d", "--output", "s3://o", "-j", "2x2")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    request = yaml.safe_load(result.stdout.split("=== SCHEDULER REQUEST ===", 1)[1])
    assert request["kind"] == "TrainJob" and request["metadata"]["namespace"] == "ml"
    assert request["spec"]["trainer"]["numNodes"] == 2 and request["spec"]["runtimeRef"]["name"] == "wukong-torchrec"
    assert request["spec"]["trainer"]["command"] == ["torchrun", "--nproc-per-node=2", "-m", "wukong.train"]


def test_trainjob_schedule_status_log_list_cancel_against_the_stand_in_server(standin) -> None:
    cluster = standin(["Created", "Running", "Complete"])
    configuration = k8s.Configuration()
    configuration.host = cluster.url
    scheduler = KubeflowScheduler("s", api_client=k8s.ApiClient(configuration))
    info = scheduler.submit_dryrun(train(data="d", output="o", j="2x2"), {"api": "trainjob", "namespace": "ml"})
    app_id = scheduler.schedule(info)
    assert app_id == f"ml:trainjob:{info.request.name}" and info.request.name in cluster.trainjobs
    states = [scheduler.describe(app_id).state for _ in range(3)]
    assert states == [AppState.SUBMITTED, AppState.RUNNING, AppState.SUCCEEDED]
    assert list(scheduler.log_iter(app_id, "node"))[:2] == ["step 0 loss 0.70", "step 10 loss 0.69"]
    assert [a.app_id for a in scheduler.list({"api": "trainjob", "namespace": "ml"})] == [app_id]
    scheduler.cancel(app_id)
    assert scheduler.describe(app_id) is None and not cluster.trainjobs


def test_a_trainjob_priority_class_is_refused() -> None:
    with pytest.raises(ValueError, match="priority class"):
        KubeflowScheduler("s").submit_dryrun(
            train(data="d", output="o"), {"api": "trainjob", "priority_class": "wukong-training"}
        )
