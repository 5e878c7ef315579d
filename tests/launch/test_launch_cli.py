"""``wukong launch``: a TrainJob (or PyTorchJob) from the command line, against a stand-in cluster."""

from __future__ import annotations

import pytest
import yaml

from wukong.cli import main
from wukong.launch import JobResources, build_pytorchjob, build_trainjob, pytorchjob, trainjob

DATA, OUTPUT = "s3://wukong/datasets/ml", "s3://wukong/runs/cli-1"
TRAIN_ARGS = ["--data", DATA, "--output", OUTPUT, "--config", "tiny"]


@pytest.fixture(autouse=True)
def _no_cluster_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ConfigMap here: every default comes from the command line or JobResources."""
    for key in ("WUKONG_IMAGE", "WUKONG_NAMESPACE", "WUKONG_NODE_SELECTOR", "WUKONG_PRIORITY_CLASS", "WUKONG_QUEUE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("WUKONG_TRAINING_RUNTIME", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "")  # not in a pod: the kubeconfig


def launch(*args: str) -> list[str]:
    return ["launch", "--data", DATA, "--output", OUTPUT, "--config", "tiny", "--namespace", "ml", *args]


def test_dry_run_prints_the_builders_trainjob(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(launch("--dry-run", "--nodes", "2", "--nproc-per-node", "2", "--cpu", "2", "--", "--epochs", "3")) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    resources = JobResources(namespace="ml", nodes=2, nproc_per_node=2, cpu="2")
    expected = build_trainjob(trainjob.job_name(OUTPUT), [*TRAIN_ARGS, "--epochs", "3"], resources)
    assert printed == trainjob.to_wire(expected)


def test_dry_run_of_a_pytorchjob(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(launch("--dry-run", "--api", "pytorchjob", "--priority-class", "high", "--gpus-per-node", "8")) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    resources = JobResources(
        namespace="ml",
        nproc_per_node=8,
        gpus_per_node=8,
        priority_class="high",
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    assert printed == pytorchjob.to_wire(build_pytorchjob(pytorchjob.job_name(OUTPUT), TRAIN_ARGS, resources))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--priority-class", "high"], "cannot set its pods' priority class (high): the runtime does"),
        (["--gpus-per-node", "-1"], "gpus_per_node >= 0"),
        (["--set", "model.num_layer=4"], "num_layer"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(launch("--dry-run", *args)) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("wukong launch") and err.count("\n") == 1


def test_launch_follows_the_trainjob_to_success(monkeypatch, standin, kubeconfig, capsys) -> None:
    cluster = standin(["Created", "Running", "Running", "Complete"])
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(cluster)))
    assert main(launch("--nodes", "2", "--poll", "0.01")) == 0
    out = capsys.readouterr().out
    name = trainjob.job_name(OUTPUT)
    assert f"created TrainJob ml/{name}" in out and "step 10 loss 0.69" in out
    assert out.rstrip().endswith(f"TrainJob ml/{name} succeeded; outputs under {OUTPUT}")
    assert cluster.trainjobs[name]["spec"]["trainer"]["numNodes"] == 2


def test_launch_exits_1_with_the_reason_when_the_job_fails(monkeypatch, standin, kubeconfig, capsys) -> None:
    cluster = standin(["Running", "Failed"], failure_message="jobset failed: node-0 exited 1")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(cluster)))
    assert main(launch("--poll", "0.01")) == 1
    assert "failed: JobSetFailed: jobset failed: node-0 exited 1" in capsys.readouterr().err


def test_detach_then_follow_the_same_job(monkeypatch, standin, kubeconfig, capsys) -> None:
    cluster = standin(["Running", "Running", "Complete"])
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(cluster)))
    assert main(launch("--detach")) == 0
    assert f"kubectl -n ml get trainjob {trainjob.job_name(OUTPUT)}" in capsys.readouterr().out
    assert main(launch("--poll", "0.01")) == 0  # run again: follows the job it created
    assert "exists (a retried step): following it" in capsys.readouterr().out
    assert sum(1 for method, _ in cluster.requests if method == "POST") == 1
