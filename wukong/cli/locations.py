"""Where a command finds what an earlier command made, when it is not told.

- A registry: ``--registry``, else ``$WUKONG_REGISTRY``, else the registry a local pipeline run made
  (``runs/<name>/registry``, as ``make demo`` does) in the working directory or the nearest parent
  folder that has one, the most recently changed when there are several.
- A dataset to inspect: the URI given, else the nearest ``runs/<name>/dataset`` the same way (its
  newest ``KEY=VALUE`` partition when a partitioned run made it).
- The dataset to evaluate a model on: the one it was trained on (its model card says which).

A default is announced on stderr in one line, so the output stays what it was and the choice is
never silent; no location at all is a one-line usage error saying how to give one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from wukong.data.errors import DataError
from wukong.pipeline.console import short_path
from wukong.registry.base import RegistryError

REGISTRY_ENV = "WUKONG_REGISTRY"
RUNS = "runs"


def last_change(path: Path) -> float:
    """The newest modification time of ``path`` and everything under it."""
    return max((p.stat().st_mtime for p in path.rglob("*")), default=path.stat().st_mtime)


def nearest_made(kind: str, start: Path | None = None) -> Path | None:
    """The most recently changed ``runs/*/<kind>`` folder of ``start`` (default: the working directory)
    or, when it has none, of its nearest parent that has one."""
    start = (start or Path.cwd()).absolute()
    for folder in (start, *start.parents):
        found = [p for p in folder.glob(f"{RUNS}/*/{kind}") if p.is_dir()]
        if found:
            return max(found, key=last_change)
    return None


def announce(command: str, message: str) -> None:
    """One line on stderr (once per job: rank 0 only under torchrun)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wukong {command}: {message}", file=sys.stderr)


def registry_uri(given: str | None, command: str) -> str:
    """The registry ``command`` works on (see the module's docstring)."""
    if given:
        return given
    if os.environ.get(REGISTRY_ENV):
        announce(command, f"registry {os.environ[REGISTRY_ENV]} (from ${REGISTRY_ENV})")
        return os.environ[REGISTRY_ENV]
    found = nearest_made("registry")
    if found is None:
        raise RegistryError(
            f"no registry given: pass --registry URI or set {REGISTRY_ENV}; a local pipeline run "
            "(`make demo`, `wukong pipeline run --local`) makes one under runs/<name>/registry"
        )
    announce(
        command,
        f"registry {short_path(str(found))} (the newest {RUNS}/*/registry; "
        f"--registry or ${REGISTRY_ENV} picks another)",
    )
    return str(found)


def _partitions(folder: Path) -> list[str]:
    """The published partition datasets in ``folder`` (``KEY=VALUE`` folders with a manifest), oldest first;
    none when ``folder`` is a dataset itself."""
    from wukong.data.manifest import MANIFEST
    from wukong.pipeline.partitions import partitions

    if (folder / MANIFEST).is_file() or not folder.is_dir():
        return []
    return [name for name in partitions(folder) if (folder / name / MANIFEST).is_file()]


def dataset_uri(given: str | None, command: str) -> str:
    """The dataset ``command`` reads: ``given``, else the nearest ``runs/*/dataset`` (its newest partition
    after a partitioned run, which publishes ``runs/<name>/dataset/KEY=VALUE``)."""
    if given:
        found = _partitions(Path(given)) if "://" not in given else []
        if found:
            raise DataError(
                f"{given} holds the datasets of partitions {', '.join(found)}, not one dataset; "
                f"pass one of them, e.g. {given.rstrip('/')}/{found[-1]}"
            )
        return given
    found = nearest_made("dataset")
    if found is None:
        raise DataError(
            "no dataset given: pass its URI (the --output of `wukong data prepare`, or runs/<name>/dataset "
            "of a local pipeline run)"
        )
    partitions = _partitions(found)
    if partitions:
        announce(
            command,
            f"dataset {short_path(str(found / partitions[-1]))} (the newest partition of the newest "
            f"{RUNS}/*/dataset, of {', '.join(partitions)}; pass a URI for another)",
        )
        return str(found / partitions[-1])
    announce(command, f"dataset {short_path(str(found))} (the newest {RUNS}/*/dataset; pass a URI for another)")
    return str(found)


def training_dataset(model_uri: str, command: str) -> str:
    """The dataset a training output was trained on, from its model card."""
    from wukong.io import open_storage
    from wukong.train.outputs import CARD

    storage = open_storage(model_uri)
    if not storage.exists(CARD):
        raise DataError(f"{model_uri}: no {CARD}; give the --output folder of a finished `wukong train`")
    uri = json.loads(storage.read_bytes(CARD)).get("dataset", {}).get("uri")
    if not uri:
        raise DataError(f"{model_uri}/{CARD} names no dataset; pass --data URI")
    announce(command, f"data {uri} (the dataset the model was trained on)")
    return uri
