"""Storage in a local folder (plain paths and ``file://`` URIs)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from wukong.io.base import ObjectInfo, Storage, StorageError

_UMASK = os.umask(0)
os.umask(_UMASK)


class LocalStorage(Storage):
    def __init__(self, root: Path, root_uri: str | None = None) -> None:
        super().__init__(root_uri or str(root))
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def _fail(self, action: str, key: str, error: OSError) -> StorageError:
        reason = error.strerror or type(error).__name__
        return StorageError(f"{self.uri(key)}: cannot {action} ({reason}); check the path and its permissions")

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as error:
            raise self._fail("read", key, error) from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(length)
        except OSError as error:
            raise self._fail("read", key, error) from None

    def _publish(self, key: str, write) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    write(f)
                os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; publish like any other file
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise self._fail("write", key, error) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self._publish(key, lambda f: f.write(data))

    def upload_file(self, local_path: Path, key: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local_path, target)  # same file system: a rename
            return
        except OSError:
            pass
        with open(local_path, "rb") as src:
            self._publish(key, lambda f: shutil.copyfileobj(src, f, 1 << 20))
        Path(local_path).unlink(missing_ok=True)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o666 & ~_UMASK)
            try:
                os.link(tmp, target)  # fails if the target exists: an atomic create-if-absent
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        except OSError as error:
            raise self._fail("write", key, error) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        start = self.root / prefix.rpartition("/")[0]  # walk only the folder the prefix names
        if not start.is_dir():
            return []
        found = []
        for path in start.rglob("*"):
            if path.name.startswith(".") and path.name.endswith(".part"):
                continue  # another writer's object in flight: not published yet
            try:
                if path.is_file():
                    key = path.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        found.append(ObjectInfo(key, path.stat().st_size))
            except FileNotFoundError:
                continue  # deleted or renamed by another process while we listed
        return sorted(found, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError as error:
                raise self._fail("delete", key, error) from None
