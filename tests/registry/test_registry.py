"""The embedded registry (folder and S3), its concurrency, the promotion gate, the Kubeflow backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from wukong.cli import main
from wukong.registry import PRODUCTION, Gate, RegistryError, open_registry
from wukong.registry.kubeflow import KubeflowRegistry


def training_output(folder: Path, seed: int) -> str:
    """A minimal `wukong train` output: model.pt and model_card.json."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.full((3,), float(seed))}, folder / "model.pt")
    (folder / "model_card.json").write_text(json.dumps({"model": "wukong", "mflops_per_example": 1.5, "steps": seed}))
    return str(folder)


@pytest.fixture(params=["folder", "s3"])
def registry_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        return str(tmp_path / "registry")
    return f"s3://{request.getfixturevalue('bucket')}/registry"


def test_register_list_promote(registry_uri: str, tmp_path: Path) -> None:
    registry = open_registry(registry_uri)
    first = registry.register("ctr", training_output(tmp_path / "a", 1), {"auc": 0.70}, {"run": "r1"})
    second = registry.register("ctr", training_output(tmp_path / "b", 2), {"auc": 0.72})
    assert (first.version, second.version) == (1, 2)
    assert registry.production("ctr") is None
    registry.promote("ctr", 2)
    assert registry.get("ctr", PRODUCTION).version == 2
    assert [(v.version, v.aliases) for v in registry.versions("ctr")] == [(1, []), (2, [PRODUCTION])]
    assert registry.get("ctr", 1).lineage == {"training_output": str(tmp_path / "a"), "run": "r1"}
    assert registry.names() == ["ctr"]
    # Registering the same model again is idempotent.
    assert registry.register("ctr", str(tmp_path / "a"), {"auc": 0.70}).version == 1
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.get("ctr", 9)


@pytest.mark.slow
def test_concurrent_registrations_never_share_a_number(registry_uri: str, tmp_path: Path) -> None:
    outputs = [training_output(tmp_path / f"m{i}", i) for i in range(10)]
    script = (
        "import sys; from wukong.registry import open_registry\n"
        "r = open_registry(sys.argv[1])\n"
        "for uri in sys.argv[2:]: print(r.register('ctr', uri, {'auc': 0.6}).version, flush=True)\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, registry_uri, *outputs[i::2]], stdout=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    numbers = [int(n) for w in workers for n in w.communicate()[0].split()]
    assert all(w.returncode == 0 for w in workers)
    assert sorted(numbers) == list(range(1, 11))
    versions = open_registry(registry_uri).versions("ctr")
    assert sorted(v.version for v in versions) == list(range(1, 11))
    assert len({v.model_sha256 for v in versions}) == 10


@pytest.mark.parametrize(
    ("candidate", "production", "promoted"),
    [
        ({"auc": 0.80}, None, True),
        ({"auc": 0.60}, None, False),  # below the minimum
        ({"auc": 0.79}, {"auc": 0.80}, True),  # within the tolerance
        ({"auc": 0.77}, {"auc": 0.80}, False),  # worse than production beyond the tolerance
        ({}, None, False),
    ],
)
def test_gate(candidate: dict, production: dict | None, promoted: bool) -> None:
    ok, reason = Gate(min_auc=0.7, tolerance=0.02).check(candidate, production)
    assert ok is promoted and reason


def test_registry_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = training_output(tmp_path / "run", 3)
    (tmp_path / "metrics.json").write_text(json.dumps({"auc": 0.75, "logloss": 0.5}))
    uri = str(tmp_path / "reg")
    assert (
        main(
            [
                "registry",
                "register",
                "--registry",
                uri,
                "--name",
                "ctr",
                "--model",
                output,
                "--metrics",
                str(tmp_path / "metrics.json"),
            ]
        )
        == 0
    )
    assert main(["registry", "promote", "--registry", uri, "ctr", "1"]) == 0
    capsys.readouterr()
    assert main(["registry", "list", "--registry", uri]) == 0
    assert "production" in capsys.readouterr().out
    assert main(["registry", "show", "--registry", uri, "ctr"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["auc"] == 0.75
    assert main(["registry", "show", "--registry", uri, "ctr", "7"]) == 2
    assert "has no version 7" in capsys.readouterr().err


class FakeModelRegistryClient:
    """The subset of ``model_registry.ModelRegistry`` the backend calls, keeping state in memory.

    Why a fake and not a stand-in server: the real client opens an async REST session to the
    Model Registry's v1alpha3 API in its constructor; emulating that API's dozens of schemas
    faithfully is more than this test can honestly claim. The fake pins the calls we make.
    """

    def __init__(self) -> None:
        self.models: dict[str, dict[str, SimpleNamespace]] = {}
        self.calls: list[tuple] = []

    def get_registered_model(self, name):
        return SimpleNamespace(name=name) if name in self.models else None

    def get_model_versions(self, name):
        return list(self.models.get(name, {}).values())

    def get_model_version(self, name, version):
        return self.models.get(name, {}).get(version)

    def get_model_artifact(self, name, version):
        v = self.get_model_version(name, version)
        return SimpleNamespace(uri=v.uri) if v else None

    def register_model(self, name, uri, *, model_format_name, model_format_version, version, description, metadata):
        self.calls.append(("register_model", name, uri, model_format_name, version))
        if version in self.models.get(name, {}):
            raise RuntimeError("version exists")
        self.models.setdefault(name, {})[version] = SimpleNamespace(
            name=version, uri=uri, custom_properties=dict(metadata)
        )

    def update(self, model):
        self.calls.append(("update", model.name, dict(model.custom_properties)))
        return model


def test_kubeflow_backend_calls(tmp_path: Path) -> None:
    client = FakeModelRegistryClient()
    registry = KubeflowRegistry(client)
    v1 = registry.register("ctr", training_output(tmp_path / "a", 1), {"auc": 0.7})
    v2 = registry.register("ctr", training_output(tmp_path / "b", 2), {"auc": 0.8})
    assert (v1.version, v2.version) == (1, 2)
    assert client.calls[0] == ("register_model", "ctr", str(tmp_path / "a" / "model.pt"), "pytorch", "1")
    assert registry.register("ctr", str(tmp_path / "a"), {"auc": 0.7}).version == 1  # idempotent
    assert sum(1 for c in client.calls if c[0] == "register_model") == 2
    registry.promote("ctr", 1)
    registry.promote("ctr", 2)
    assert registry.get("ctr", PRODUCTION).version == 2
    assert [v.aliases for v in registry.versions("ctr")] == [[], [PRODUCTION]]


@pytest.mark.slow
def test_unreachable_kubeflow_registry_is_one_line() -> None:
    with pytest.raises(RegistryError, match="cannot reach the Kubeflow Model Registry"):
        open_registry("kubeflow://127.0.0.1:1")
