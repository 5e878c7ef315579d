"""The Kubeflow Model Registry backend, through the ``model-registry`` client.

Versions are numbered ``1, 2, ...`` as strings; the model file's sha256 and the metrics are stored
as version metadata, so registering the same model again returns the existing version (idempotent:
a retried pipeline step does not create a second version). The production alias is the custom
property ``stage=production`` on exactly one version. Files stay where training wrote them (the
model's ``uri``); the registry holds the metadata and lineage.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlparse

from wukong.io import open_storage
from wukong.registry.base import PRODUCTION, ModelVersion, Registry, RegistryError

STAGE = "stage"


class KubeflowRegistry(Registry):
    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def from_uri(cls, uri: str, author: str = "wukong") -> KubeflowRegistry:
        """``kubeflow://host:port`` (plain HTTP) or ``kubeflows://host:port`` (TLS)."""
        from model_registry import ModelRegistry

        parsed = urlparse(uri)
        secure = parsed.scheme == "kubeflows"
        address = f"{'https' if secure else 'http'}://{parsed.hostname}"
        try:
            client = ModelRegistry(address, parsed.port or (443 if secure else 8080), author=author, is_secure=secure)
        except Exception as error:  # the client connects in its constructor; any failure is "unreachable"
            raise RegistryError(f"{uri}: cannot reach the Kubeflow Model Registry ({error})") from None
        return cls(client)

    def _record(self, name: str, version: Any) -> ModelVersion:
        props = dict(getattr(version, "custom_properties", None) or {})
        artifact = self.client.get_model_artifact(name, version.name)
        return ModelVersion(
            name=name,
            version=int(version.name),
            uri=getattr(artifact, "uri", "") if artifact else "",
            metrics=json.loads(props.get("metrics", "{}")),
            card=json.loads(props.get("card", "{}")),
            lineage=json.loads(props.get("lineage", "{}")),
            created=str(getattr(version, "create_time_since_epoch", "") or ""),
            model_sha256=props.get("model_sha256", ""),
            aliases=[PRODUCTION] if props.get(STAGE) == PRODUCTION else [],
        )

    def _raw_versions(self, name: str) -> list[Any]:
        if self.client.get_registered_model(name) is None:
            return []
        return list(self.client.get_model_versions(name))

    def versions(self, name: str) -> list[ModelVersion]:
        return sorted((self._record(name, v) for v in self._raw_versions(name)), key=lambda r: r.version)

    def names(self) -> list[str]:
        raise RegistryError("listing every model is not supported by the Kubeflow backend; give a model name")

    def register(
        self, name: str, model_uri: str, metrics: dict[str, Any], lineage: dict[str, Any] | None = None
    ) -> ModelVersion:
        source = open_storage(model_uri)
        digest = hashlib.sha256(source.read_bytes("model.pt")).hexdigest()
        card = json.loads(source.read_bytes("model_card.json"))
        existing = self.versions(name)
        for record in existing:
            if record.model_sha256 == digest:
                return record
        number = (existing[-1].version if existing else 0) + 1
        metadata = {
            "model_sha256": digest,
            "metrics": json.dumps(metrics),
            "card": json.dumps({k: card.get(k) for k in ("model", "mflops_per_example", "steps", "best_step")}),
            "lineage": json.dumps({"training_output": model_uri, **(lineage or {})}),
        }
        versions = card.get("package_versions", {})
        self.client.register_model(
            name,
            source.uri("model.pt"),
            model_format_name="pytorch",
            model_format_version=versions.get("torch", ""),
            version=str(number),
            description="Wukong-family ranking model trained by wukong-rec",
            metadata=metadata,
        )
        return self.get(name, number)

    def get(self, name: str, version: int | str) -> ModelVersion:
        if version == PRODUCTION:
            for record in self.versions(name):
                if PRODUCTION in record.aliases:
                    return record
            raise RegistryError(f"model {name!r} has no {PRODUCTION!r} version")
        raw = self.client.get_model_version(name, str(version))
        if raw is None:
            raise RegistryError(f"model {name!r} has no version {version}")
        return self._record(name, raw)

    def promote(self, name: str, version: int, alias: str = PRODUCTION) -> ModelVersion:
        if alias != PRODUCTION:
            raise RegistryError("the Kubeflow backend supports the production alias only")
        target = self.client.get_model_version(name, str(version))
        if target is None:
            raise RegistryError(f"model {name!r} has no version {version}")
        for raw in self._raw_versions(name):
            props = dict(raw.custom_properties or {})
            if props.get(STAGE) == PRODUCTION and raw.name != str(version):
                props.pop(STAGE)
                raw.custom_properties = props
                self.client.update(raw)
        target.custom_properties = {**(target.custom_properties or {}), STAGE: PRODUCTION}
        self.client.update(target)
        return self.get(name, version)
