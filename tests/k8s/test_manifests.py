"""Manifests, example TrainJobs and PyTorchJobs, the ClusterTrainingRuntimes and Dockerfiles: schema-valid,
fresh, and safe (no cluster here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubeflow.training.api_client import ApiClient as TrainingApiClient
from kubeflow_trainer_api import models

from tests.launch.k8s_standin import trainer_pod
from wukong.launch import JobResources, build_pytorchjob, build_trainjob, to_wire, trainjob
from wukong.launch.examples import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.30.0"
TEMPLATE = "s3-secret.template.yaml"


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources() -> list[tuple[Path, dict]]:
    """Every full resource (not kustomizations, patches or the secret template)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name in ("kustomization.yaml", TEMPLATE) or path.name.endswith("-patch.yaml"):
            continue
        found += [(path, doc) for doc in documents(path)]
    return found


def runtimes() -> dict[str, dict]:
    """The ClusterTrainingRuntimes of k8s/runtimes by name."""
    return {d["metadata"]["name"]: d for _, d in resources() if d["kind"] == "ClusterTrainingRuntime"}


def pod_specs(doc: dict) -> list[dict]:
    """The pod specs a workload runs: a TrainJob's is the Trainer's merge of its runtime and itself."""
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "PyTorchJob":
        return [spec["template"]["spec"] for spec in doc["spec"]["pytorchReplicaSpecs"].values()]
    if doc["kind"] == "ClusterTrainingRuntime":
        return [j["template"]["spec"]["template"]["spec"] for j in doc["spec"]["template"]["spec"]["replicatedJobs"]]
    if doc["kind"] == "TrainJob":
        return [trainer_pod(runtimes()[doc["spec"]["runtimeRef"]["name"]], doc)["spec"]]
    return []


TRAINER_MODELS = {
    "TrainJob": models.TrainerV1alpha1TrainJob,
    "ClusterTrainingRuntime": models.TrainerV1alpha1ClusterTrainingRuntime,
}


@pytest.mark.parametrize(
    ("path", "doc"), [pytest.param(p, d, id=f"{p.relative_to(K8S)}:{d['kind']}") for p, d in resources()]
)
def test_resources_are_schema_valid(path: Path, doc: dict) -> None:
    if doc["kind"] == "PyTorchJob":  # a CRD: no upstream schema; it must deserialize into the SDK's models

        class Response:
            data = json.dumps(doc)

        job = TrainingApiClient().deserialize(Response(), "KubeflowOrgV1PyTorchJob")
        assert job.spec.pytorch_replica_specs["Master"].template.spec.containers[0].name == "pytorch"
    elif doc["kind"] in TRAINER_MODELS:  # Kubeflow Trainer v2: the kubeflow-trainer-api models
        model = TRAINER_MODELS[doc["kind"]].from_dict(doc)  # wrong types fail here
        assert model.to_dict() == doc, "a field the Trainer v2 API does not have"
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def replica_pods() -> list:
    """Each replica of every PyTorchJob (the k8s/ examples and the builder's defaults) as the Pod the
    training operator creates from its template: the template's metadata and spec under a Pod; each
    trainer node of every TrainJob (examples and defaults) as the Pod the Trainer makes of its runtime
    and it; and each runtime's own pod template."""
    jobs = [(str(p.relative_to(K8S)), d) for p, d in resources() if d["kind"] in ("PyTorchJob", "TrainJob")]
    jobs.append(
        ("build_pytorchjob(defaults)", to_wire(build_pytorchjob("wukong-train-x", ["--data", "d"], JobResources())))
    )
    jobs.append(
        (
            "build_trainjob(defaults)",
            trainjob.to_wire(build_trainjob("wukong-train-x", ["--data", "d"], JobResources())),
        )
    )
    cases = []
    for where, job in jobs:
        if job["kind"] == "TrainJob":
            pod = trainer_pod(runtimes()[job["spec"]["runtimeRef"]["name"]], job)
            pod["metadata"]["name"] = f"{job['metadata']['name']}-node-0-0-abcde"
            cases.append(pytest.param(pod, "node", id=f"{where}:node"))
            continue
        for replica, spec in job["spec"]["pytorchReplicaSpecs"].items():
            template = spec["template"]
            metadata = {**template.get("metadata", {}), "name": f"{job['metadata']['name']}-{replica.lower()}-0"}
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
            cases.append(pytest.param(pod, "pytorch", id=f"{where}:{replica}"))
    for name, runtime in runtimes().items():
        for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
            template = job["template"]["spec"]["template"]
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "name": name}}
            cases.append(pytest.param({**pod, "spec": template["spec"]}, "node", id=f"runtime {name}:{job['name']}"))
    return cases


@pytest.mark.parametrize(("pod", "container"), replica_pods())
def test_replica_pod_templates_are_valid_pods(pod: dict, container: str) -> None:
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["containers"][0]["name"] == container  # the operator injects its rendezvous env there


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry} does not exist"


def test_examples_are_fresh() -> None:
    for path, text in render().items():
        assert path.read_text() == text, f"{path} is stale: run `make manifests`"


def assert_safe(pod: dict, where: object) -> None:
    """Non-root, no privilege escalation, limits on CPU and memory, credentials only from Secrets."""
    assert pod["securityContext"]["runAsNonRoot"] is True, where
    for container in pod["containers"]:
        assert container["resources"]["limits"].keys() >= {"cpu", "memory"}, (where, container["name"])
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        for env in container.get("env", []):
            if re.search(r"KEY|SECRET|PASSWORD|TOKEN|USER", env["name"]):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], (where, env["name"])


def test_workloads_run_as_non_root_with_limits_and_no_literal_credentials() -> None:
    kinds = ("Deployment", "PyTorchJob", "TrainJob", "ClusterTrainingRuntime")
    workloads = [(p, d) for p, d in resources() if d["kind"] in kinds]
    assert {d["kind"] for _, d in workloads} == set(kinds)
    for path, doc in workloads:
        for pod in pod_specs(doc):
            assert_safe(pod, path)


def test_a_trainjob_is_safe_on_any_runtime() -> None:
    """On a runtime with no security settings (like the stock torch-distributed one, a root image), the
    TrainJob's own runtime patch still makes its pods non-root with their credentials from the Secret."""
    node = {"name": "node", "image": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime"}
    replicated = {"name": "node", "template": {"spec": {"template": {"spec": {"containers": [node]}}}}}
    bare = {"spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [replicated]}}}}
    for path, doc in resources():
        if doc["kind"] == "TrainJob":
            pod = trainer_pod(bare, doc)
            assert_safe(pod["spec"], path)
            assert pod["spec"]["securityContext"]["runAsUser"] == 1000 and pod["spec"]["serviceAccountName"] == "wukong"


def test_permissions_are_namespaced_and_minimal() -> None:
    role = next(d for _, d in resources() if d["kind"] == "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    granted = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert {(g, r) for g, r, _ in granted} == {
        ("trainer.kubeflow.org", "trainjobs"),
        ("trainer.kubeflow.org", "trainjobs/status"),
        ("trainer.kubeflow.org", "trainingruntimes"),
        ("jobset.x-k8s.io", "jobsets"),
        ("kubeflow.org", "pytorchjobs"),
        ("kubeflow.org", "pytorchjobs/status"),
        ("", "pods"),
        ("", "pods/log"),
        ("", "events"),
    }
    writes = {(g, r) for g, r, v in granted if v not in ("get", "list", "watch")}
    assert writes == {("trainer.kubeflow.org", "trainjobs"), ("kubeflow.org", "pytorchjobs")}  # jobs only


def test_the_only_cluster_wide_permission_reads_the_training_runtimes() -> None:
    """The kubeflow SDK reads a TrainJob's ClusterTrainingRuntime (cluster-scoped) on every status check."""
    cluster_wide = [(p, d) for p, d in resources() if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert {p.relative_to(K8S).as_posix() for p, _ in cluster_wide} == {"runtimes/runtime-reader.yaml"}
    (role,) = [d for _, d in cluster_wide if d["kind"] == "ClusterRole"]
    (binding,) = [d for _, d in cluster_wide if d["kind"] == "ClusterRoleBinding"]
    assert role["rules"] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["clustertrainingruntimes"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {(s["kind"], s["namespace"]) for s in binding["subjects"]} == {("ServiceAccount", "wukong")}


def test_trainjobs_name_runtimes_that_exist() -> None:
    for path, doc in resources():
        if doc["kind"] == "TrainJob":
            assert doc["spec"]["runtimeRef"] == {
                "kind": "ClusterTrainingRuntime",
                "name": doc["spec"]["runtimeRef"]["name"],
            }
            assert doc["spec"]["runtimeRef"]["name"] in runtimes(), path
    h100 = runtimes()["wukong-torchrec-h100"]["spec"]["template"]["spec"]["replicatedJobs"][0]
    priority = h100["template"]["spec"]["template"]["spec"]["priorityClassName"]
    assert any(d["kind"] == "PriorityClass" and d["metadata"]["name"] == priority for _, d in resources())


def test_runtimes_render_cluster_scoped() -> None:
    docs = render_overlay(K8S / "runtimes")
    assert {d["kind"] for d in docs} == {"ClusterTrainingRuntime", "ClusterRole", "ClusterRoleBinding"}
    assert all("namespace" not in d["metadata"] for d in docs)
    assert set(runtimes()) == {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterTrainingRuntime"}


def test_secret_template_holds_no_values() -> None:
    (secret,) = documents(K8S / "base" / TEMPLATE)
    assert all(re.fullmatch(r"\$\{[A-Z_]+\}", v) for v in secret["stringData"].values())
    everything = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    assert not re.search(r"AKIA[0-9A-Z]{16}|minioadmin|password:\s*\S", everything, re.IGNORECASE)


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "images").glob("Dockerfile.*")), ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint_and_run_as_non_root(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert re.search(r"^USER 1000:1000$", text, re.M)
    assert "torchrec.txt" in text and "--no-deps" in text  # STACK.md's install order


def _merge(base: dict, patch: dict) -> dict:
    """A strategic-merge patch for the maps our overlays patch (ConfigMap data): maps merge, values replace."""
    merged = dict(base)
    for key, value in patch.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def render_overlay(folder: Path) -> list[dict]:
    """What ``kustomize build`` does with our kustomizations: resources, patches, namespace.

    kustomize itself is not installable here (no binary in the package registries), so this test
    renders the subset of its features the overlays use and fails on any other field.
    """
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(spec) <= {"apiVersion", "kind", "namespace", "resources", "patches", "labels"}, folder
    docs: list[dict] = []
    for entry in spec.get("resources", []):
        target = folder / entry
        docs += render_overlay(target) if target.is_dir() else documents(target)
    for patch_entry in spec.get("patches", []):
        (patch,) = documents(folder / patch_entry["path"])
        matches = [
            i
            for i, d in enumerate(docs)
            if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
        ]
        assert len(matches) == 1, f"{folder}: patch {patch_entry['path']} matches {len(matches)} resources"
        docs[matches[0]] = _merge(docs[matches[0]], patch)
    cluster_scoped = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"}
    if "namespace" in spec:
        docs = [
            d if d["kind"] in cluster_scoped else _merge(d, {"metadata": {"namespace": spec["namespace"]}})
            for d in docs
        ]
    return docs


@pytest.mark.parametrize("overlay", ["cpu-dev", "h100"])
def test_rendered_overlays_are_schema_valid(overlay: str) -> None:
    docs = render_overlay(K8S / "overlays" / overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    defaults = next(d for d in docs if d["kind"] == "ConfigMap")
    assert defaults["metadata"]["namespace"] == "wukong"
    assert defaults["data"]["WUKONG_TRAINING_RUNTIME"] in runtimes()
    if overlay == "cpu-dev":
        assert defaults["data"]["AWS_ENDPOINT_URL"] == "http://minio.wukong.svc:9000"
        assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "minio" for d in docs)
    else:
        assert defaults["data"]["WUKONG_IMAGE"].endswith("-cuda") and "H100" in defaults["data"]["WUKONG_NODE_SELECTOR"]
