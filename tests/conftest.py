"""Shared fixtures: the tiny preset, the real MovieLens copy, a real S3 API server (moto on 127.0.0.1)."""

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


@pytest.fixture
def tiny() -> Config:
    return load_config("tiny")


@pytest.fixture
def tiny_schema(tiny: Config) -> FeatureSchema:
    return tiny.data.synthetic_schema()


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def movielens() -> Path:
    """The real ml-latest-small copy beside the project (never committed into it)."""
    if not (MOVIELENS / "ratings.csv").is_file():
        pytest.skip(f"the shared MovieLens copy is absent ({MOVIELENS})")
    return MOVIELENS


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
