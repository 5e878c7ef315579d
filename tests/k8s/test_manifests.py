"""Manifests, example PyTorchJobs and Dockerfiles: schema-valid, fresh, and safe (no cluster here)."""

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

from wukong.launch import JobResources, build_pytorchjob, to_wire
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


def containers(doc: dict) -> list[dict]:
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]["containers"]
    if doc["kind"] == "PyTorchJob":
        return [
            c for spec in doc["spec"]["pytorchReplicaSpecs"].values() for c in spec["template"]["spec"]["containers"]
        ]
    return []


@pytest.mark.parametrize(
    ("path", "doc"), [pytest.param(p, d, id=f"{p.relative_to(K8S)}:{d['kind']}") for p, d in resources()]
)
def test_resources_are_schema_valid(path: Path, doc: dict) -> None:
    if doc["kind"] == "PyTorchJob":  # a CRD: no upstream schema; it must deserialize into the SDK's models

        class Response:
            data = json.dumps(doc)

        job = TrainingApiClient().deserialize(Response(), "KubeflowOrgV1PyTorchJob")
        assert job.spec.pytorch_replica_specs["Master"].template.spec.containers[0].name == "pytorch"
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def replica_pods() -> list:
    """Each replica of every PyTorchJob (the k8s/ examples and the builder's defaults) as the Pod the
    training operator creates from its template: the template's metadata and spec under a Pod."""
    jobs = [(str(p.relative_to(K8S)), d) for p, d in resources() if d["kind"] == "PyTorchJob"]
    jobs.append(
        ("build_pytorchjob(defaults)", to_wire(build_pytorchjob("wukong-train-x", ["--data", "d"], JobResources())))
    )
    cases = []
    for where, job in jobs:
        for replica, spec in job["spec"]["pytorchReplicaSpecs"].items():
            template = spec["template"]
            metadata = {**template.get("metadata", {}), "name": f"{job['metadata']['name']}-{replica.lower()}-0"}
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
            cases.append(pytest.param(pod, id=f"{where}:{replica}"))
    return cases


@pytest.mark.parametrize("pod", replica_pods())
def test_replica_pod_templates_are_valid_pods(pod: dict) -> None:
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["containers"][0]["name"] == "pytorch"  # the operator injects its rendezvous env there


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry} does not exist"


def test_examples_are_fresh() -> None:
    for path, text in render().items():
        assert path.read_text() == text, f"{path} is stale: run `make manifests`"


def test_workloads_run_as_non_root_with_limits_and_no_literal_credentials() -> None:
    workloads = [(p, d) for p, d in resources() if d["kind"] in ("Deployment", "PyTorchJob")]
    assert {d["kind"] for _, d in workloads} == {"Deployment", "PyTorchJob"}
    for path, doc in workloads:
        pod = (
            doc["spec"]["template"]["spec"]
            if doc["kind"] == "Deployment"
            else next(iter(doc["spec"]["pytorchReplicaSpecs"].values()))["template"]["spec"]
        )
        assert pod["securityContext"]["runAsNonRoot"] is True, path
        for container in containers(doc):
            assert container["resources"]["limits"].keys() >= {"cpu", "memory"}, (path, container["name"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, path
            for env in container.get("env", []):
                if re.search(r"KEY|SECRET|PASSWORD|TOKEN|USER", env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (path, env["name"])


def test_permissions_are_namespaced_and_minimal() -> None:
    kinds = [d["kind"] for _, d in resources()]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    role = next(d for _, d in resources() if d["kind"] == "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {
        ("kubeflow.org", "pytorchjobs"),
        ("kubeflow.org", "pytorchjobs/status"),
        ("", "pods"),
        ("", "pods/log"),
        ("", "events"),
    }


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
    if overlay == "cpu-dev":
        assert defaults["data"]["AWS_ENDPOINT_URL"] == "http://minio.wukong.svc:9000"
        assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "minio" for d in docs)
    else:
        assert defaults["data"]["WUKONG_IMAGE"].endswith("-cuda") and "H100" in defaults["data"]["WUKONG_NODE_SELECTOR"]
