"""The PyTorchJob builder and launcher, against a stand-in Kubernetes API server (no cluster here)."""

from __future__ import annotations

import json

import pytest
from kubeflow.training.api_client import ApiClient as TrainingApiClient
from kubernetes import client as k8s

from wukong.launch import JobResources, LaunchError, PyTorchJobLauncher, build_pytorchjob, job_name, to_wire

from .k8s_standin import StandInCluster

ARGS = ["--data", "s3://wukong/datasets/ml", "--output", "s3://wukong/runs/run-42", "--config", "movielens"]


def api_client(url: str) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = url
    return k8s.ApiClient(configuration)


def test_job_shape_for_a_multi_node_gpu_pool() -> None:
    resources = JobResources(
        nodes=4,
        nproc_per_node=8,
        gpus_per_node=8,
        node_selector={"pool": "h100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        priority_class="training",
    )
    wire = to_wire(build_pytorchjob("wukong-train-x", ARGS, resources))
    spec = wire["spec"]
    assert (
        spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
        and spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    )
    assert spec["nprocPerNode"] == "8" and spec["elasticPolicy"]["maxRestarts"] == 3
    assert spec["runPolicy"]["backoffLimit"] == 3 and spec["runPolicy"]["ttlSecondsAfterFinished"] == 86400
    pod = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "pytorch" and container["command"] == ["torchrun"]
    assert container["args"][-len(ARGS) - 2 :] == ["-m", "wukong.train", *ARGS]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert pod["nodeSelector"] == {"pool": "h100"} and pod["priorityClassName"] == "training"
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "wukong-s3-credentials"
    assert all("value" not in env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    assert "NCCL_ASYNC_ERROR_HANDLING" in env
    assert (
        pod["securityContext"]["runAsNonRoot"] is True
        and container["securityContext"]["allowPrivilegeEscalation"] is False
    )

    class Response:
        data = json.dumps(wire)

    back = TrainingApiClient().deserialize(Response(), "KubeflowOrgV1PyTorchJob")
    assert back.spec.pytorch_replica_specs["Worker"].replicas == 3


def test_job_names_are_deterministic_and_valid() -> None:
    assert job_name("s3://wukong/runs/run-42") == job_name("s3://wukong/runs/run-42")
    assert job_name("s3://wukong/runs/run-42") != job_name("s3://wukong/runs/run-43")
    name = job_name("S3://Weird_Name/" + "x" * 100)
    assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower()


def test_created_running_succeeded_streams_logs(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = StandInCluster(["Created", "Running", "Running", "Succeeded"])
    lines: list[str] = []
    try:
        launcher = PyTorchJobLauncher(api_client(cluster.url), "kubeflow", poll_seconds=0.01, log=lines.append)
        job = build_pytorchjob(job_name("run-1"), ARGS, JobResources())
        final = launcher.run(job, delete_on_success=True)
    finally:
        cluster.close()
    assert final["status"]["conditions"][-1]["type"] == "Succeeded"
    assert any(line.startswith("created PyTorchJob kubeflow/") for line in lines)
    streamed = [line for line in lines if line.startswith("step ")]
    # The log grows as the job runs; every line reaches the step's log exactly once, in order.
    assert streamed == [f"step {i * 10} loss {0.7 - i * 0.01:.2f}" for i in range(len(streamed))] and len(streamed) >= 3
    assert any(method == "DELETE" for method, _ in cluster.requests) and not cluster.jobs


def test_failed_job_raises_with_reason_and_log_tail() -> None:
    cluster = StandInCluster(
        ["Created", "Running", "Failed"], failure_message="worker 1 exited with code 137 (OOMKilled)"
    )
    try:
        launcher = PyTorchJobLauncher(api_client(cluster.url), "kubeflow", poll_seconds=0.01, log=lambda _: None)
        with pytest.raises(LaunchError, match=r"failed: PyTorchJobFailed: worker 1 exited with code 137") as error:
            launcher.run(build_pytorchjob("wukong-train-f", ARGS, JobResources()))
    finally:
        cluster.close()
    assert "last log lines:\nstep 0 loss 0.70" in str(error.value)


def test_a_retried_step_finds_its_job_instead_of_creating_another() -> None:
    cluster = StandInCluster(["Running", "Succeeded"])
    try:
        launcher = PyTorchJobLauncher(api_client(cluster.url), "kubeflow", poll_seconds=0.01, log=lambda _: None)
        job = build_pytorchjob(job_name("run-7"), ARGS, JobResources())
        _, created_first = launcher.get_or_create(job)
        _, created_again = launcher.get_or_create(build_pytorchjob(job_name("run-7"), ARGS, JobResources()))
    finally:
        cluster.close()
    assert (created_first, created_again) == (True, False)
    assert sum(1 for method, _ in cluster.requests if method == "POST") == 1


def test_the_wait_bound_is_honoured() -> None:
    cluster = StandInCluster(["Running"])
    try:
        launcher = PyTorchJobLauncher(
            api_client(cluster.url), "ml", poll_seconds=0.01, timeout_seconds=0.05, log=lambda _: None
        )
        with pytest.raises(
            LaunchError, match=r"still Running after 0 s; it keeps running: follow it with `kubectl -n ml"
        ):
            launcher.run(build_pytorchjob("wukong-train-slow", ARGS, JobResources(namespace="ml")))
    finally:
        cluster.close()


def test_pipeline_train_step_with_the_pytorchjob_launcher(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """steps.train(launcher="pytorchjob") as the KFP step runs it: kubeconfig → stand-in API server."""
    from wukong.pipeline import steps

    cluster = StandInCluster(["Created", "Running", "Succeeded"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "standin",
                "clusters": [{"name": "standin", "cluster": {"server": cluster.url}}],
                "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u", "namespace": "ml"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    output = tmp_path / "run"
    output.mkdir()
    (output / "model_card.json").write_text(json.dumps({"model": "wukong", "steps": 5}))
    for key, value in {
        "KUBECONFIG": str(kubeconfig),
        "WUKONG_NAMESPACE": "ml",
        "WUKONG_IMAGE": "reg/wukong:cuda",
        "WUKONG_NODE_SELECTOR": "pool=h100",
        "WUKONG_JOB_POLL_S": "0.01",
        "KUBERNETES_SERVICE_HOST": "",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        card = steps.train("s3://d", str(output), "wukong", "criteo", launcher="pytorchjob", nodes=2, gpus_per_node=8)
    finally:
        cluster.close()
    assert card == {"model": "wukong", "steps": 5}
    (job,) = cluster.jobs.values()
    spec = job["spec"]
    assert job["metadata"]["namespace"] == "ml" and job["metadata"]["name"] == job_name(str(output))
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1 and spec["nprocPerNode"] == "8"
    pod = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "h100"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["containers"][0]["image"] == "reg/wukong:cuda"


def test_the_stand_in_honours_label_selectors() -> None:
    cluster = StandInCluster(["Running"])
    try:
        launcher = PyTorchJobLauncher(api_client(cluster.url), "ml", poll_seconds=0.01, log=lambda _: None)
        for name, nodes in (("job-a", 3), ("job-b", 1)):
            launcher.get_or_create(build_pytorchjob(name, ARGS, JobResources(namespace="ml", nodes=nodes)))
        launcher.get_or_create(build_pytorchjob("job-c", ARGS, JobResources(namespace="other")))
        core = k8s.CoreV1Api(api_client(cluster.url))

        def pods(selector: str) -> list[str]:
            return sorted(p.metadata.name for p in core.list_namespaced_pod("ml", label_selector=selector).items)

        job, kind = "training.kubeflow.org/job-name", "training.kubeflow.org/replica-type"
        a = ["job-a-master-0", "job-a-worker-0", "job-a-worker-1"]
        assert pods(f"{job}=job-a,{kind}=master") == ["job-a-master-0"]
        assert pods(f"{job}==job-a") == a
        assert pods(f"{job}!=job-a") == ["job-b-master-0"]
        assert pods(f"{kind} in (worker, launcher)") == a[1:]
        assert pods(f"{kind} notin (master),{job}") == a[1:]
        assert pods("app.kubernetes.io/component=train,!no-such-label") == [*a, "job-b-master-0"]  # not job-c's
        assert pods("no-such-label") == [] and pods(f"{job}=job-c") == []
        with pytest.raises(k8s.ApiException) as error:
            pods(f"{job} in job-a")
        assert error.value.status == 400
    finally:
        cluster.close()


def test_logs_come_from_the_master_of_the_job_being_followed() -> None:
    cluster = StandInCluster(["Running", "Running", "Succeeded"])
    try:
        launcher = PyTorchJobLauncher(api_client(cluster.url), "kubeflow", poll_seconds=0.01, log=lambda _: None)
        launcher.get_or_create(build_pytorchjob("wukong-train-other", ARGS, JobResources(nodes=2)))
        launcher.run(build_pytorchjob("wukong-train-mine", ARGS, JobResources(nodes=2)))
    finally:
        cluster.close()
    read = {path.rsplit("/", 2)[1] for method, path in cluster.requests if path.endswith("/log")}
    assert read == {"wukong-train-mine-master-0"}
