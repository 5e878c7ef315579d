"""Storage in an S3 bucket (AWS, MinIO, any S3 API) through boto3.

The endpoint comes from ``AWS_ENDPOINT_URL`` (so MinIO works), credentials from the standard AWS
variables or files (Kubernetes Secrets mount them as variables); nothing is read from code or
manifests. Requests are retried by botocore ("standard" mode); large files go up as multipart uploads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from wukong.io.base import ObjectInfo, Storage, StorageError

MULTIPART = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}


def _client():
    config = Config(
        retries={"mode": "standard", "max_attempts": int(os.environ.get("WUKONG_S3_MAX_ATTEMPTS", "5"))},
        connect_timeout=float(os.environ.get("WUKONG_S3_CONNECT_TIMEOUT", "10")),
        read_timeout=60,
    )
    # A fresh session per storage: credentials and endpoint are read from the environment now, not cached.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None, config=config)


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str) -> None:
        super().__init__(f"s3://{bucket}/{prefix}".rstrip("/"))
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = _client()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _explain(self, error: Exception, key: str) -> StorageError:
        where = self.uri(key)
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"
        if isinstance(error, NoCredentialsError):
            return StorageError(f"{where}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(error, EndpointConnectionError):
            return StorageError(f"{where}: cannot reach {endpoint}; check AWS_ENDPOINT_URL and the network")
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket!r} does not exist; create it or fix the URI")
            if code in ("NoSuchKey", "404"):
                return StorageError(f"{where}: no such object")
            if code in CREDENTIAL_CODES or code == "403":
                return StorageError(
                    f"{where}: access refused ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                    f"and the bucket policy"
                )
            return StorageError(f"{where}: S3 error {code}: {error.response.get('Error', {}).get('Message', '')}")
        return StorageError(f"{where}: {type(error).__name__}: {error}; check AWS_ENDPOINT_URL ({endpoint})")

    def _call(self, key: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError) as error:
            raise self._explain(error, key) from None

    def read_bytes(self, key: str) -> bytes:
        response = self._call(key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return self._call(key, response["Body"].read)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        byte_range = f"bytes={start}-{start + length - 1}"
        response = self._call(key, self.client.get_object, Bucket=self.bucket, Key=self._key(key), Range=byte_range)
        return self._call(key, response["Body"].read)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload_file(self, local_path: Path, key: str) -> None:
        self._call(key, self.client.upload_file, str(local_path), self.bucket, self._key(key), Config=MULTIPART)
        Path(local_path).unlink(missing_ok=True)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
            ):
                return False
            raise self._explain(error, key) from None
        except BotoCoreError as error:
            raise self._explain(error, key) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                # A missing key in a missing bucket also answers 404: tell the two apart.
                self._call(key, self.client.head_bucket, Bucket=self.bucket)
                return False
            raise self._explain(error, key) from None
        except BotoCoreError as error:
            raise self._explain(error, key) from None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                found += [ObjectInfo(o["Key"][strip:], o["Size"]) for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as error:
            raise self._explain(error, prefix) from None
        return sorted(found, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self._call(keys[start], self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": chunk})
