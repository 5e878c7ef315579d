"""Which model a ``--model`` argument names: a folder, or a version in a registry.

- a path or URI (``runs/m``, ``s3://bucket/runs/m``, ``runs/m/export``): that folder;
- ``VERSION`` or ``NAME:VERSION`` (``production``, ``3``, ``wukong-ctr:production``): that version in
  the registry (the CLI's: ``--registry``, ``$WUKONG_REGISTRY`` or the newest ``runs/*/registry``, see
  :mod:`wukong.cli.locations`); ``NAME`` may be left out when the registry holds one model only.

A model folder (a training output or a registered version) keeps its servable artifact in
``export/``; ``wukong predict`` also takes the artifact folder itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wukong.data.errors import DataError
from wukong.io import open_storage
from wukong.registry import ModelVersion, open_registry
from wukong.serve.artifact import EXPORT_DIR, SIGNATURE
from wukong.train.outputs import MODEL

REFERENCE = re.compile(r"^(?:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*):)?(?P<version>\d+|[A-Za-z][A-Za-z0-9_-]*)$")


@dataclass
class Located:
    """A model's folder, and the registry version it is (None for a folder named directly)."""

    folder: str
    version: ModelVersion | None = None

    def describe(self) -> str:
        if self.version is None:
            return self.folder
        return f"{self.version.name} version {self.version.version} ({self.folder})"


def _is_location(reference: str) -> bool:
    return "/" in reference or "://" in reference or reference.startswith(".") or Path(reference).exists()


def locate(
    reference: str, registry: str | Callable[[], str] | None = None, name: str | None = None, flag: str = "--model"
) -> Located:
    """The folder ``reference`` names (see the module docstring). ``registry``: the registry URI, or a
    function that finds it (called only when ``reference`` is a version: the CLI's defaults announce
    themselves). ``flag``: the option that gave ``reference``, as errors name it.

    Raises:
        DataError: a reference that is neither, or a version without a registry to look it up in.
        RegistryError: an unknown model or version.
    """
    if _is_location(reference):
        return Located(reference.rstrip("/"))
    match = REFERENCE.match(reference)
    if not match:
        raise DataError(f"{flag} {reference!r}: give a model folder, or a registry version as VERSION or NAME:VERSION")
    uri = registry() if callable(registry) else registry
    if not uri:
        raise DataError(f"{flag} {reference}: a registry version, but no registry; pass --registry URI")
    opened = open_registry(uri)
    model_name = match["name"] or name
    if model_name is None:
        names = opened.names()
        if len(names) != 1:
            held = ", ".join(names) if names else "no model"
            raise DataError(f"{uri} holds {held}; name one: {flag} NAME:{match['version']}")
        model_name = names[0]
    version = opened.get(model_name, match["version"])
    return Located(version.uri.rstrip("/").removesuffix("/" + MODEL), version)


def artifact_of(located: Located) -> str:
    """The exported artifact of a located model: the folder itself, or its ``export/``.

    Raises:
        DataError: the model has not been exported.
    """
    if open_storage(located.folder).exists(SIGNATURE):
        return located.folder
    export = open_storage(located.folder).uri(EXPORT_DIR)
    if open_storage(export).exists(SIGNATURE):
        return export
    again = f"{located.version.name}:{located.version.version}" if located.version else located.folder
    missing = f"{EXPORT_DIR}/{SIGNATURE}"
    raise DataError(f"{located.describe()}: not exported (no {missing}); run `wukong export --model {again}`")
