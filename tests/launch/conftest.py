"""Stand-in clusters for the launcher tests, reached the way a user reaches a cluster: a kubeconfig."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubeflow.common.types import KubernetesBackendConfig
from kubeflow.trainer import TrainerClient
from kubernetes import client as k8s

from .k8s_standin import StandInCluster

RUNTIMES = Path(__file__).resolve().parents[2] / "k8s" / "runtimes"


def runtime_manifests() -> list[dict]:
    """The ClusterTrainingRuntimes of k8s/runtimes, as applied to a cluster."""
    return [d for path in sorted(RUNTIMES.glob("wukong-torchrec*.yaml")) for d in yaml.safe_load_all(path.read_text())]


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Callable[..., StandInCluster]]:
    """Start a stand-in cluster serving this project's runtimes: ``standin(phases, **options)``."""
    started: list[StandInCluster] = []
    default = k8s.Configuration.get_default_copy()  # the SDK's kubeconfig loading replaces the default

    def start(phases: list[str], **options) -> StandInCluster:
        options.setdefault("runtimes", runtime_manifests())
        started.append(StandInCluster(phases, **options))
        return started[-1]

    yield start
    for cluster in started:
        cluster.close()
    k8s.Configuration.set_default(default)


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Callable[[StandInCluster, str], Path]:
    def write(cluster: StandInCluster, namespace: str = "ml") -> Path:
        path = tmp_path / f"kubeconfig-{cluster.server.server_port}"
        path.write_text(json.dumps(cluster.kubeconfig(namespace)))
        return path

    return write


@pytest.fixture
def trainer_client(kubeconfig) -> Callable[[StandInCluster, str], TrainerClient]:
    """The real ``kubeflow.trainer.TrainerClient`` (Kubernetes backend) of a stand-in, through a kubeconfig.

    The namespace is given explicitly: the SDK reads the namespace of the default kubeconfig, not of
    ``config_file``."""

    def connect(cluster: StandInCluster, namespace: str = "ml") -> TrainerClient:
        config = KubernetesBackendConfig(namespace=namespace, config_file=str(kubeconfig(cluster, namespace)))
        return TrainerClient(config)

    return connect
