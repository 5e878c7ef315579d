"""Fixtures for data tests: a real S3 API server (moto, 127.0.0.1), the shared MovieLens copy, small inputs."""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest


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


def criteo_lines(count: int, seed: int = 0) -> list[str]:
    """``count`` well-formed Criteo rows with varied labels, dense values and categorical ids."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        dense = [str(rng.randint(-1, 50)) if rng.random() > 0.1 else "" for _ in range(13)]
        cats = [f"{rng.randint(0, 40):08x}" if rng.random() > 0.05 else "" for _ in range(26)]
        lines.append("\t".join([str(rng.randint(0, 1)), *dense, *cats]))
    return lines


def write_criteo(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path
