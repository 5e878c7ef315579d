"""Shared fixtures: the tiny preset, MovieLens-format folders, a real S3 API server (moto on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch

from wukong.config import Config, load_config
from wukong.schema import FeatureSchema

from .fixtures import write_movielens


def pytest_configure(config: pytest.Config) -> None:
    """In each of N pytest-xdist workers: torch gets 1/N of the cores (torch's default is all of them), here and,
    through OMP_NUM_THREADS, in the subprocesses tests start, so N workers do not each run a thread per core.
    A thread count set by the caller is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, torch.get_num_threads() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture
def tiny() -> Config:
    return load_config("tiny")


@pytest.fixture
def tiny_schema(tiny: Config) -> FeatureSchema:
    return tiny.data.synthetic_schema()


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


# The real ml-latest-small copy beside the project (never committed into it), when there is one;
# WUKONG_TEST_MOVIELENS points elsewhere (a missing folder runs the suite as on a fresh clone).
SHARED_MOVIELENS = Path(
    os.environ.get("WUKONG_TEST_MOVIELENS", Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small")
)
MOVIELENS_COPIES = ["generated"] + (["shared"] if (SHARED_MOVIELENS / "ratings.csv").is_file() else [])


@pytest.fixture(scope="session")
def generated_movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ml-latest-small-format folder written by the suite (tests/fixtures.py); training tests use it."""
    return write_movielens(tmp_path_factory.mktemp("movielens") / "ml-generated")


@pytest.fixture(scope="session", params=MOVIELENS_COPIES)
def movielens(request: pytest.FixtureRequest, generated_movielens: Path) -> Path:
    """Each MovieLens folder at hand: the generated one always, the shared real copy as well when present."""
    return generated_movielens if request.param == "generated" else SHARED_MOVIELENS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in this process, on a free loopback port; boto3 reaches it through AWS_* variables."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket per test."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:50]
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=name)
    return name
