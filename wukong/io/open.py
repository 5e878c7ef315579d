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
