"""A registry kept on the object store itself (a folder or an ``s3://`` prefix): no server needed.

Layout under the registry root::

    <name>/claims/000007                 created exclusively: whoever creates it owns version 7
    <name>/versions/000007/model.pt      the version's files, copied from the training output
    <name>/versions/000007/model_card.json, metrics.json
    <name>/versions/000007/preprocessing.json, vocabulary.parquet   the model's vocabulary, when it kept one
    <name>/versions/000007/export/...     the servable artifact, if the training output was exported
    <name>/versions/000007/version.json  written last: a version exists once this exists
    <name>/aliases/production.json       {"version": 7}

Version numbers come from exclusive creation of claim objects, so concurrent registrations (two
pipelines finishing at once, on one machine or many) never share or lose a number. A registration
that dies half-way leaves a claim without ``version.json``: that number is skipped, never reused.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from typing import Any

from wukong.io import Storage, StorageError, open_storage
from wukong.registry.base import PRODUCTION, ModelVersion, Registry, RegistryError

FILES = ("model.pt", "model_card.json", "metrics.json")
VOCABULARY_FILES = ("preprocessing.json", "vocabulary.parquet")  # wukong.data.vocabulary: copied when present
EXPORT, SIGNATURE = "export", "signature.json"  # the servable artifact, when exported (wukong.serve)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CARD_KEYS = ("model", "mflops_per_example", "steps", "best_step", "world_size", "dataset", "git_revision")


def _number(version: int) -> str:
    return f"{version:06d}"


class EmbeddedRegistry(Registry):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.storage: Storage = open_storage(uri)

    @staticmethod
    def _check_name(name: str) -> None:
        if not NAME.match(name):
            raise RegistryError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (at most 128)")

    def _claimed(self, name: str) -> list[int]:
        return sorted(int(o.key.rsplit("/", 1)[1]) for o in self.storage.list(f"{name}/claims/"))

    def _claim(self, name: str) -> int:
        candidate = (self._claimed(name) or [0])[-1] + 1
        while not self.storage.create_exclusive(f"{name}/claims/{_number(candidate)}", b""):
            candidate += 1  # somebody else took it: try the next number
        return candidate

    def register(
        self, name: str, model_uri: str, metrics: dict[str, Any], lineage: dict[str, Any] | None = None
    ) -> ModelVersion:
        self._check_name(name)
        source = open_storage(model_uri)
        try:
            model_bytes = source.read_bytes("model.pt")
            card = json.loads(source.read_bytes("model_card.json"))
        except StorageError as error:
            raise RegistryError(f"{model_uri}: not a training output ({error})") from None
        digest = hashlib.sha256(model_bytes).hexdigest()
        for existing in self.versions(name):
            if existing.model_sha256 == digest:
                return existing
        version = self._claim(name)
        folder = f"{name}/versions/{_number(version)}"
        self.storage.write_bytes(f"{folder}/model.pt", model_bytes)
        self.storage.write_bytes(f"{folder}/model_card.json", json.dumps(card, indent=1).encode())
        self.storage.write_bytes(f"{folder}/metrics.json", json.dumps(metrics, indent=1).encode())
        for file in VOCABULARY_FILES:
            if source.exists(file):
                self.storage.write_bytes(f"{folder}/{file}", source.read_bytes(file))
        self._copy_export(source, folder)
        record = ModelVersion(
            name=name,
            version=version,
            uri=self.storage.uri(folder),
            metrics=metrics,
            card={k: card.get(k) for k in CARD_KEYS},
            lineage={"training_output": model_uri, **(lineage or {})},
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            model_sha256=digest,
        )
        self.storage.write_bytes(f"{folder}/version.json", json.dumps(record.to_dict(), indent=1).encode())
        return record

    def _copy_export(self, source: Storage, folder: str) -> None:
        """The training output's servable artifact (``wukong export``), when it has one: its files,
        then the ``signature.json`` that names them (a reader sees the export whole or not at all)."""
        marker = f"{EXPORT}/{SIGNATURE}"
        if not source.exists(marker):
            return
        signature = source.read_bytes(marker)
        for name in json.loads(signature)["files"].values():
            self.storage.write_bytes(f"{folder}/{EXPORT}/{name}", source.read_bytes(f"{EXPORT}/{name}"))
        self.storage.write_bytes(f"{folder}/{marker}", signature)

    def _aliases(self, name: str) -> dict[str, int]:
        found = {}
        for obj in self.storage.list(f"{name}/aliases/"):
            alias = obj.key.rsplit("/", 1)[1].removesuffix(".json")
            found[alias] = json.loads(self.storage.read_bytes(obj.key))["version"]
        return found

    def versions(self, name: str) -> list[ModelVersion]:
        aliases = self._aliases(name)
        records = []
        for obj in self.storage.list(f"{name}/versions/"):
            if obj.key.endswith("/version.json"):
                record = ModelVersion(**json.loads(self.storage.read_bytes(obj.key)))
                record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
                records.append(record)
        return sorted(records, key=lambda r: r.version)

    def names(self) -> list[str]:
        return sorted({o.key.split("/", 1)[0] for o in self.storage.list() if "/versions/" in o.key})

    def get(self, name: str, version: int | str) -> ModelVersion:
        if isinstance(version, str) and not version.isdigit():
            aliases = self._aliases(name)
            if version not in aliases:
                raise RegistryError(f"{self.uri}: model {name!r} has no {version!r} version")
            version = aliases[version]
        for record in self.versions(name):
            if record.version == int(version):
                return record
        known = [r.version for r in self.versions(name)]
        raise RegistryError(f"{self.uri}: model {name!r} has no version {version} (versions: {known or 'none'})")

    def promote(self, name: str, version: int, alias: str = PRODUCTION) -> ModelVersion:
        record = self.get(name, version)
        body = {"version": record.version, "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        self.storage.write_bytes(f"{name}/aliases/{alias}.json", json.dumps(body).encode())
        return self.get(name, record.version)
