"""The Kubeflow Trainer v2 TrainJob: its builder, and the launcher driving the real ``kubeflow`` SDK
``TrainerClient`` against a stand-in Kubernetes API server through a kubeconfig (no cluster here).

(No ``from __future__ import annotations``: kfp reads the test pipeline's annotations as types.)"""

import json
import re
from pathlib import Path

import pytest
from kubeflow_trainer_api import models

from wukong.launch import JobResources, LaunchError, TrainJobLauncher, build_trainjob
from wukong.launch.resources import GPU_TOLERATION
from wukong.launch.trainjob import job_name, to_wire

ARGS = ["--data", "s3://wukong/datasets/ml", "--output", "s3://wukong/runs/run-42", "--config", "movielens"]
SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp")


def request(name: str = "wukong-train-x", **resources):
    return build_trainjob(name, ARGS, JobResources(namespace="ml", **resources))


def test_trainjob_shape_for_a_multi_node_gpu_pool() -> None:
    resources = JobResources(
        namespace="ml",
        nodes=4,
        nproc_per_node=8,
        gpus_per_node=8,
        node_selector={"pool": "h100"},
        tolerations=[GPU_TOLERATION],
        shm_size="64Gi",
        queue="team-a",
    )
    wire = to_wire(build_trainjob("wukong-train-x", ARGS, resources))
    job = models.TrainerV1alpha1TrainJob.from_dict(wire)  # the Trainer v2 API model takes it
    assert (job.spec.runtime_ref.name, job.spec.runtime_ref.kind) == ("wukong-torchrec", "ClusterTrainingRuntime")
    assert wire["metadata"] == {
        "name": "wukong-train-x",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/name": "wukong", "kueue.x-k8s.io/queue-name": "team-a"},
    }
    trainer = wire["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["image"] == JobResources.image
    assert trainer["resourcesPerNode"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "8"}
    assert trainer["resourcesPerNode"]["requests"] == trainer["resourcesPerNode"]["limits"]
    assert trainer["command"] == ["torchrun", "--nproc-per-node=8", "-m", "wukong.train"] and trainer["args"] == ARGS
    assert {e["name"]: e["value"] for e in trainer["env"]}["NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert wire["spec"]["activeDeadlineSeconds"] == 7 * 24 * 3600
    (patch,) = wire["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    template = node["template"]["spec"]["template"]
    pod = template["spec"]
    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["nodeSelector"] == {"pool": "h100"} and pod["tolerations"] == [GPU_TOLERATION]
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}]
    assert pod["serviceAccountName"] == "wukong" and pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["name"] == "node" and {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "wukong-s3-credentials"
    assert all("value" not in e for e in env.values())  # credentials by reference only


def test_a_cpu_trainjob_asks_for_its_processes_and_no_gpus() -> None:
    wire = to_wire(request(nodes=2, nproc_per_node=2, cpu="8"))
    trainer = wire["spec"]["trainer"]
    assert trainer["command"][1] == "--nproc-per-node=2"  # not the runtime's default: one per CPU (8)
    assert "nvidia.com/gpu" not in trainer["resourcesPerNode"]["limits"] and "env" not in trainer
    assert "tolerations" not in json.dumps(wire)


def test_a_trainjob_leaves_the_priority_class_to_its_runtime() -> None:
    with pytest.raises(ValueError, match=r"the runtime does .* e.g. wukong-torchrec-h100"):
        request(priority_class="wukong-training")


def test_trainjob_names_are_deterministic_and_fit_jobset_pod_names() -> None:
    assert job_name("s3://wukong/runs/run-42") == job_name("s3://wukong/runs/run-42")
    assert job_name("s3://wukong/runs/run-42") != job_name("s3://wukong/runs/run-43")
    for run_id in ("S3://Weird_Name/" + "x" * 200, "r", "---"):
        # JobSet names pods <job>-node-<job index>-<pod index>-<5 random>: a DNS-1035 label.
        pod = f"{job_name(run_id)}-node-0-999-abcde"
        assert len(pod) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", pod), pod


def test_the_runtime_manifest_is_read_by_the_sdk(standin, trainer_client) -> None:
    client = trainer_client(standin(["Running"]))
    runtimes = {r.name: r for r in client.list_runtimes()}
    assert set(runtimes) == {"wukong-torchrec", "wukong-torchrec-h100"}
    cpu, h100 = runtimes["wukong-torchrec"].trainer, client.get_runtime("wukong-torchrec-h100").trainer
    assert (cpu.framework, cpu.device, cpu.image) == ("torch", "cpu", JobResources.image)
    assert (h100.device, h100.device_count) == ("gpu", "8") and h100.image.endswith("-cuda")


def test_the_sdk_creates_exactly_the_rendered_trainjob(standin, trainer_client) -> None:
    cluster = standin(["Running"])
    launcher = TrainJobLauncher(trainer_client(cluster), log=lambda _: None)
    job = request(job_name("s3://wukong/runs/run-42"), nodes=3, gpus_per_node=8, nproc_per_node=8, shm_size="1Gi")
    name, created = launcher.get_or_create(job)
    assert created and [m for m, p in cluster.requests if p.endswith("/trainjobs")] == ["POST"]
    stored = cluster.trainjobs[name]
    assert all(stored["metadata"].pop(key) for key in SERVER_SET)
    assert stored == to_wire(job)  # what a dry run prints is what the SDK submitted


def test_created_running_complete_streams_logs(standin, trainer_client) -> None:
    cluster = standin(["Created", "Running", "Running", "Running", "Complete"])
    lines: list[str] = []
    launcher = TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, log=lines.append)
    final = launcher.run(request(job_name("run-1"), nodes=2), delete_on_success=True)
    assert final.status == "Complete" and [s.status for s in final.steps] == ["Succeeded", "Succeeded"]
    assert f"created TrainJob ml/{job_name('run-1')}" in lines
    phases = [line.rsplit(": ", 1)[1] for line in lines if line.startswith("TrainJob ")]
    assert phases == ["Created", "Running", "Complete"]
    streamed = [line for line in lines if line.startswith("step ")]
    # The log grows as the job runs; every line reaches the step's log exactly once, in order.
    assert streamed == [f"step {i * 10} loss {0.7 - i * 0.01:.2f}" for i in range(len(streamed))] and len(streamed) >= 3
    logs = {p.rsplit("/", 2)[1] for m, p in cluster.requests if p.endswith("/log")}
    assert logs and all(re.fullmatch(rf"{job_name('run-1')}-node-0-0-[0-9a-f]{{5}}", pod) for pod in logs)
    assert ("DELETE", f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs/{job_name('run-1')}") in (
        cluster.requests
    )
    assert not cluster.trainjobs


def test_a_restart_after_a_node_loss_is_followed_to_completion(standin, trainer_client) -> None:
    """The JobSet recreates every node: new pods, a log that starts again (resuming from the checkpoint)."""
    cluster = standin(["Running", "Running", "Running", "Restarting", "Running", "Running", "Complete"])
    lines: list[str] = []
    launcher = TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, log=lines.append)
    assert launcher.run(request("wukong-train-r", nodes=2)).status == "Complete"
    resumed = lines.index("restart 1: resumed from the latest complete checkpoint")
    before, after = lines[:resumed], lines[resumed + 1 :]
    assert [line for line in before if line.startswith("step ")] == [
        "step 0 loss 0.70",
        "step 10 loss 0.69",
        "step 20 loss 0.68",
    ]
    assert [line for line in after if line.startswith("step ")][:2] == ["step 0 loss 0.70", "step 10 loss 0.69"]
    pods = {p.rsplit("/", 2)[1] for m, p in cluster.requests if p.endswith("/log")}
    assert len(pods) == 2  # node 0 before and after the restart


def test_a_failed_trainjob_raises_with_reason_events_and_log_tail(standin, trainer_client) -> None:
    cluster = standin(["Created", "Running", "Running", "Failed"], failure_message="jobset failed: node-1 exited 137")
    launcher = TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, log=lambda _: None)
    with pytest.raises(LaunchError, match=r"TrainJob ml/wukong-train-f failed: JobSetFailed: jobset failed") as error:
        launcher.run(request("wukong-train-f", nodes=2))
    text = str(error.value)
    assert "last log lines:\nstep 0 loss 0.70\nstep 10 loss 0.69" in text
    assert re.search(
        r"events:\n.*TrainJob wukong-train-f: JobSetCreated.*\nPod wukong-train-f-node-0-0-\w+: OOMKilling", text
    )


def test_a_second_call_finds_the_existing_job(standin, trainer_client) -> None:
    cluster = standin(["Running", "Complete"])
    launcher = TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, log=lambda _: None)
    _, created_first = launcher.get_or_create(request(job_name("run-7")))
    again = TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, log=lambda _: None)  # a retried step
    _, created_again = again.get_or_create(request(job_name("run-7")))
    assert (created_first, created_again) == (True, False)
    assert sum(1 for method, _ in cluster.requests if method == "POST") == 1


def test_the_wait_bound_holds(standin, trainer_client) -> None:
    cluster = standin(["Running"])
    launcher = TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, timeout_seconds=0.05, log=lambda _: None)
    with pytest.raises(LaunchError, match=r"still Running after 0 s; it keeps running: follow it with `kubectl -n ml"):
        launcher.run(request("wukong-train-slow"))
    assert "wukong-train-slow" in cluster.trainjobs  # not deleted: it keeps running


def test_a_missing_runtime_is_one_clear_error(standin, trainer_client) -> None:
    cluster = standin(["Running"], runtimes=[])
    launcher = TrainJobLauncher(trainer_client(cluster), log=lambda _: None)
    with pytest.raises(LaunchError, match=r"no TrainingRuntime or ClusterTrainingRuntime named wukong-torchrec"):
        launcher.run(request())
    assert not cluster.trainjobs


def _environment(monkeypatch: pytest.MonkeyPatch, kubeconfig: Path, **extra: str) -> None:
    """What the train step's pod gets from the wukong-defaults ConfigMap, with the stand-in as its cluster."""
    settings = {
        "KUBECONFIG": str(kubeconfig),
        "KUBERNETES_SERVICE_HOST": "",  # not in a pod: use the kubeconfig
        "WUKONG_NAMESPACE": "ml",
        "WUKONG_IMAGE": "reg/wukong:cuda",
        "WUKONG_NODE_SELECTOR": "pool=h100",
        "WUKONG_PRIORITY_CLASS": "wukong-training",  # a PyTorchJob's; a TrainJob's runtime sets its own
        "WUKONG_TRAINING_RUNTIME": "wukong-torchrec-h100",
        "WUKONG_JOB_POLL_S": "0.01",
        **extra,
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)


def _card(job: dict) -> None:
    """What the trainer nodes leave under --output when they finish: the model card."""
    args = job["spec"]["trainer"]["args"]
    output = Path(args[args.index("--output") + 1])
    output.mkdir(parents=True, exist_ok=True)
    card = {"model": "wukong", "steps": 5, "mflops_per_example": 0.1, "metrics": {"valid": {"auc": 0.71}}}
    (output / "model_card.json").write_text(json.dumps(card))


def test_pipeline_train_step_with_the_trainjob_launcher(tmp_path, monkeypatch, standin, kubeconfig) -> None:
    """steps.train(launcher="trainjob") as the KFP step runs it: kubeconfig → stand-in API server."""
    from wukong.pipeline import steps

    cluster = standin(["Created", "Running", "Complete"], on_complete=_card)
    _environment(monkeypatch, kubeconfig(cluster))
    output = tmp_path / "run"
    card = steps.train("s3://d", str(output), "wukong", "criteo", launcher="trainjob", nodes=2, gpus_per_node=8)
    assert card["steps"] == 5
    (job,) = cluster.trainjobs.values()
    assert job["metadata"]["name"] == job_name(str(output)) and job["metadata"]["namespace"] == "ml"
    assert job["spec"]["runtimeRef"]["name"] == "wukong-torchrec-h100"
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["image"] == "reg/wukong:cuda"
    assert (
        trainer["command"][1] == "--nproc-per-node=8" and trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    )
    (patch,) = job["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "h100"} and pod["tolerations"] == [GPU_TOLERATION]


@pytest.mark.slow
def test_train_component_under_kfp_local_with_the_trainjob_launcher(tmp_path, monkeypatch, standin, kubeconfig) -> None:
    """The pipeline's train component, run by kfp.local as a subprocess, launches a TrainJob on the stand-in."""
    from kfp import dsl
    from kfp.dsl import Dataset

    from components import train
    from wukong.pipeline.local import start_local

    cluster = standin(["Created", "Running", "Running", "Complete"], on_complete=_card)
    _environment(monkeypatch, kubeconfig(cluster))
    runs, data = tmp_path / "runs", str(tmp_path / "dataset")  # the cluster's storage, seen from here

    @dsl.pipeline(name="train-on-the-cluster")
    def train_only() -> str:
        dataset = dsl.importer(artifact_uri=data, artifact_class=Dataset, metadata={"uri": data})
        trained = train(
            dataset=dataset.output,
            model_name="wukong",
            preset="tiny",
            overrides=["train.max_steps=5"],
            runs_root=str(runs),
            run_id="run-1",
            launcher="trainjob",
            nodes=2,
            nproc_per_node=2,
            gpus_per_node=0,
        )
        return trained.outputs["Output"]

    start_local(tmp_path / "kfp")
    assert train_only().output == str(runs / "run-1")
    (job,) = cluster.trainjobs.values()
    assert job["metadata"]["name"] == job_name(str(runs / "run-1"))
    assert job["spec"]["trainer"]["args"][:2] == ["--data", data]
    assert job["spec"]["trainer"]["args"][-2:] == ["--set", "train.max_steps=5"]
    assert job["spec"]["trainer"]["numNodes"] == 2 and cluster.phase[job["metadata"]["name"]] == "Complete"


def test_a_trainer_older_than_runtime_patches_is_refused(standin, trainer_client) -> None:
    """Before v2.2 the TrainJob API had no runtimePatches: the cluster would drop credentials and /dev/shm."""
    cluster = standin(["Running"], trainer_version="v2.1.0")
    launcher = TrainJobLauncher(trainer_client(cluster), log=lambda _: None)
    with pytest.raises(LaunchError, match=r"runs Kubeflow Trainer v2.1.0; these TrainJobs need v2.2 or later"):
        launcher.run(request())
    assert not cluster.trainjobs


def test_an_unknown_trainer_version_is_said_and_not_fatal(standin, trainer_client) -> None:
    cluster = standin(["Complete"], trainer_version=None)
    lines: list[str] = []
    TrainJobLauncher(trainer_client(cluster), poll_seconds=0.01, log=lines.append).run(request())
    assert any(line.startswith("Kubeflow Trainer version unknown") for line in lines) and cluster.trainjobs
