"""Pick the storage back end from a URI."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from wukong.io.base import Storage, StorageError


def open_storage(uri: str) -> Storage:
    """``/path``, ``relative/path`` or ``file:///path`` → local folder; ``s3://bucket/prefix`` → S3.

    Raises:
        StorageError: for a scheme that is not supported or an S3 URI without a bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        from wukong.io.local import LocalStorage

        return LocalStorage(path.absolute(), uri.rstrip("/") or str(path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri}: an S3 URI needs a bucket: s3://BUCKET/PREFIX")
        from wukong.io.s3 import S3Storage

        return S3Storage(parsed.netloc, parsed.path.lstrip("/"))
    raise StorageError(f"{uri}: unsupported scheme {parsed.scheme!r}; use a path, file:// or s3://")


def _split(uri: str) -> tuple[str, str]:
    parent, _, key = uri.rstrip("/").rpartition("/")
    if not key:
        raise StorageError(f"{uri}: expected the URI of an object, not of a folder")
    return parent or ".", key


def read_object(uri: str) -> bytes:
    """The bytes of the object (or file) at a full URI: ``s3://bucket/run/metrics.json``, ``runs/x.json``."""
    parent, key = _split(uri)
    return open_storage(parent).read_bytes(key)


def write_object(uri: str, data: bytes) -> None:
    parent, key = _split(uri)
    open_storage(parent).write_bytes(key, data)


def upload_object(local_path: Path, uri: str) -> None:
    """Publish a local file as the object at a full URI, whole or not at all; the local file is consumed."""
    parent, key = _split(uri)
    open_storage(parent).upload_file(local_path, key)
