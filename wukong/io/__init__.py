"""Object storage behind one small interface: plain paths, ``file://`` and ``s3://`` (S3, MinIO).

Example::

    store = open_storage("s3://bucket/datasets/criteo")   # endpoint from AWS_ENDPOINT_URL
    store.write_bytes("manifest.json", data)              # a whole object appears at once, or not at all
    store.read_bytes("manifest.json")
"""

from wukong.io.base import ObjectInfo, Storage, StorageError
from wukong.io.open import open_storage, read_object, upload_object, write_object

__all__ = ["ObjectInfo", "Storage", "StorageError", "open_storage", "read_object", "upload_object", "write_object"]
