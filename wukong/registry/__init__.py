"""Model registries: embedded on the object store, or a Kubeflow Model Registry server.

``open_registry("runs/registry")`` / ``open_registry("s3://bucket/registry")`` → embedded;
``open_registry("kubeflow://host:port")`` → Kubeflow Model Registry (``model-registry`` client).
"""

from __future__ import annotations

from wukong.registry.base import PRODUCTION, Gate, ModelVersion, Registry, RegistryError


def open_registry(uri: str, author: str = "wukong") -> Registry:
    if uri.startswith(("kubeflow://", "kubeflows://")):
        from wukong.registry.kubeflow import KubeflowRegistry

        return KubeflowRegistry.from_uri(uri, author=author)
    from wukong.registry.embedded import EmbeddedRegistry

    return EmbeddedRegistry(uri)


__all__ = ["PRODUCTION", "Gate", "ModelVersion", "Registry", "RegistryError", "open_registry"]
