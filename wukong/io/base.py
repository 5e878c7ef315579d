"""The storage interface shared by the local and S3 back ends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class StorageError(RuntimeError):
    """A storage operation failed; the message is one line naming the URI and what to check."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the storage root
    size: int


class Storage(ABC):
    """Objects under one root URI, addressed by ``/``-separated keys relative to it.

    Every write publishes a whole object at once (atomic rename locally, a single PUT or a completed
    multipart upload on S3): a reader never sees half an object.
    """

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri.rstrip("/")

    def uri(self, key: str = "") -> str:
        return f"{self.root_uri}/{key}" if key else self.root_uri

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def upload_file(self, local_path: Path, key: str) -> None:
        """Publish a local file as ``key`` (multipart on S3 for large files). The local file is consumed."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist yet, atomically; False if it already existed.

        The basis of lock-free counters: of several writers racing for one key, exactly one wins.
        """

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects; keys that do not exist are ignored."""

    def check_writable(self) -> None:
        """Fail early (one line) if objects cannot be written here."""
        probe = ".wukong-write-check"
        self.write_bytes(probe, b"")
        self.delete([probe])
