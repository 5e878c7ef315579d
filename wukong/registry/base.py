"""What a model registry stores and the promotion gate between versions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

PRODUCTION = "production"


class RegistryError(ValueError):
    """A registry request that cannot be served (unknown model or version, unreachable registry)."""


@dataclass
class ModelVersion:
    """One registered version of a named model."""

    name: str
    version: int
    uri: str  # where the version's files (model.pt, model_card.json, metrics.json) are
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluation metrics (auc, logloss, ...)
    card: dict[str, Any] = field(default_factory=dict)  # summary of the model card
    lineage: dict[str, Any] = field(default_factory=dict)  # dataset, training output, pipeline run
    created: str = ""
    model_sha256: str = ""
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    """A candidate is promoted when ``auc ≥ min_auc`` and ``auc ≥ production_auc - tolerance``."""

    min_auc: float = 0.5
    tolerance: float = 0.0

    def check(self, candidate: dict[str, Any], production: dict[str, Any] | None) -> tuple[bool, str]:
        auc = candidate.get("auc")
        if auc is None:
            return False, "the candidate has no AUC"
        if auc < self.min_auc:
            return False, f"AUC {auc:.4f} is below the minimum {self.min_auc:.4f}"
        if production is None or production.get("auc") is None:
            return True, f"AUC {auc:.4f} passes the minimum {self.min_auc:.4f} and there is no production model"
        floor = production["auc"] - self.tolerance
        if auc < floor:
            return (
                False,
                f"AUC {auc:.4f} is worse than production {production['auc']:.4f} by more than {self.tolerance}",
            )
        return True, f"AUC {auc:.4f} vs production {production['auc']:.4f} (tolerance {self.tolerance})"


class Registry(ABC):
    @abstractmethod
    def register(
        self, name: str, model_uri: str, metrics: dict[str, Any], lineage: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Register the training output at ``model_uri`` as a new version (or return the version that
        already holds the same model file: registering is idempotent)."""

    @abstractmethod
    def versions(self, name: str) -> list[ModelVersion]: ...

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def get(self, name: str, version: int | str) -> ModelVersion:
        """A version by number or by alias (``production``)."""

    @abstractmethod
    def promote(self, name: str, version: int, alias: str = PRODUCTION) -> ModelVersion: ...

    def production(self, name: str) -> ModelVersion | None:
        try:
            return self.get(name, PRODUCTION)
        except RegistryError:
            return None
