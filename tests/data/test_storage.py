"""Storage through a real S3 API (moto server) and a local folder, and its one-line errors."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from tests.conftest import free_port
from wukong.io import StorageError, open_storage
from wukong.io.local import LocalStorage
from wukong.io.s3 import S3Storage


@pytest.fixture(params=["local", "file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "local":
        return open_storage(str(tmp_path / "root"))
    if request.param == "file":
        return open_storage(f"file://{tmp_path}/root")
    bucket = request.getfixturevalue("bucket")
    return open_storage(f"s3://{bucket}/some/prefix")


def test_round_trip(store, tmp_path: Path) -> None:
    store.write_bytes("a/b.bin", b"0123456789")
    assert store.exists("a/b.bin") and not store.exists("a/c.bin")
    assert store.read_bytes("a/b.bin") == b"0123456789"
    assert store.read_range("a/b.bin", 3, 4) == b"3456"
    local = tmp_path / "upload.bin"
    local.write_bytes(b"x" * 1000)
    store.upload_file(local, "c.bin")
    assert not local.exists()  # consumed
    assert [(o.key, o.size) for o in store.list()] == [("a/b.bin", 10), ("c.bin", 1000)]
    assert [o.key for o in store.list("a/")] == ["a/b.bin"]
    store.delete(["a/b.bin", "never-existed"])
    assert [o.key for o in store.list()] == ["c.bin"]


def test_s3_keys_live_under_the_prefix(bucket: str) -> None:
    open_storage(f"s3://{bucket}/data/set1").write_bytes("manifest.json", b"{}")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["data/set1/manifest.json"]


def test_large_files_go_up_in_parts(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    store = open_storage(f"s3://{bucket}/big")
    assert isinstance(store, S3Storage)
    original = store.client.create_multipart_upload
    monkeypatch.setattr(store.client, "create_multipart_upload", lambda **kw: calls.append(kw) or original(**kw))
    monkeypatch.setattr(
        "wukong.io.s3.MULTIPART", TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    )
    payload = os.urandom(11 << 20)
    local = tmp_path / "big.bin"
    local.write_bytes(payload)
    store.upload_file(local, "big.bin")
    assert calls, "an 11 MiB upload above a 5 MiB threshold must be multipart"
    assert store.read_bytes("big.bin") == payload


def test_local_writes_are_atomic_and_leave_no_temporaries(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)

    class Boom(Exception):
        pass

    def failing(f):
        f.write(b"half")
        raise Boom

    with pytest.raises(Boom):
        store._publish("x.bin", failing)
    assert list(tmp_path.iterdir()) == []


def test_missing_bucket_is_one_clear_line(s3_endpoint: str) -> None:
    with pytest.raises(StorageError) as error:
        open_storage("s3://no-such-bucket/x").read_bytes("manifest.json")
    assert (
        str(error.value)
        == "s3://no-such-bucket/x/manifest.json: bucket 'no-such-bucket' does not exist; create it or fix the URI"
    )


def test_unreachable_endpoint_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("WUKONG_S3_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageError, match=r"s3://b/p/k: cannot reach http://127\.0\.0\.1:\d+; check AWS_ENDPOINT_URL"):
        open_storage("s3://b/p").read_bytes("k")


def test_missing_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageError, match="no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        open_storage("s3://b/p").read_bytes("k")


class _RefusingS3(BaseHTTPRequestHandler):
    """A stand-in S3 endpoint that refuses every request as a real one does for an unknown access key."""

    def _refuse(self) -> None:
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InvalidAccessKeyId</Code>"
            b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = _refuse

    def log_message(self, *args) -> None:
        pass


def test_bad_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _RefusingS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        with pytest.raises(
            StorageError, match=r"s3://b/p/k: access refused \(InvalidAccessKeyId\); check AWS_ACCESS_KEY_ID"
        ):
            open_storage("s3://b/p").read_bytes("k")
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("uri", "message"),
    [("s3:///nobucket", "an S3 URI needs a bucket"), ("gs://bucket/x", "unsupported scheme 'gs'")],
)
def test_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_storage(uri)


def test_create_exclusive_has_one_winner(store) -> None:
    assert store.create_exclusive("claims/1", b"first") is True
    assert store.create_exclusive("claims/1", b"second") is False
    assert store.read_bytes("claims/1") == b"first"
