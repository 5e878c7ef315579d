"""The feature schema: what the data provides and what the model's embedding layer consumes.

A schema names the label, the dense (float) features and the sparse (categorical) features with
their cardinalities. Datasets store it in their manifest; models are built from it.

Example::

    schema = FeatureSchema(
        dense=("age", "price"),
        sparse=(SparseFeature("user", 1000), SparseFeature("genres", 20, multi_hot=True)),
    )
    schema.num_features(num_dense_embeddings=1)  # 3 rows in X0: one dense embedding + 2 sparse
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SparseFeature:
    """A categorical feature looked up in its own embedding table.

    Args:
        name: the feature key (also the key of its pooled embedding).
        cardinality: number of ids, i.e. rows of its table; ids lie in ``[0, cardinality)``.
        multi_hot: whether an example may hold several ids (they are sum-pooled).
    """

    name: str
    cardinality: int
    multi_hot: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a sparse feature needs a non-empty name")
        if self.cardinality < 1:
            raise ValueError(f"sparse feature {self.name!r}: cardinality must be >= 1, got {self.cardinality}")


@dataclass(frozen=True)
class FeatureSchema:
    """Label, dense and sparse features of a dataset, in a fixed order."""

    dense: tuple[str, ...] = ()
    sparse: tuple[SparseFeature, ...] = ()
    label: str = "label"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dense", tuple(self.dense))
        object.__setattr__(self, "sparse", tuple(self.sparse))
        names = [*self.dense, *(f.name for f in self.sparse)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique; repeated: {', '.join(duplicates)}")
        if not names:
            raise ValueError("a schema needs at least one dense or sparse feature")

    @property
    def sparse_names(self) -> list[str]:
        return [f.name for f in self.sparse]

    def num_features(self, num_dense_embeddings: int) -> int:
        """Rows n of the embedding layer's output: dense embeddings (if any dense feature) + one per sparse."""
        return (num_dense_embeddings if self.dense else 0) + len(self.sparse)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "dense": list(self.dense), "sparse": [asdict(f) for f in self.sparse]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(
            dense=tuple(data.get("dense", ())),
            sparse=tuple(SparseFeature(**f) for f in data.get("sparse", ())),
            label=data.get("label", "label"),
        )

    @classmethod
    def synthetic(cls, num_dense: int, num_sparse: int, cardinality: int, num_multi_hot: int = 0) -> FeatureSchema:
        """A Criteo-shaped schema ``int_0..``, ``cat_0..``; the last ``num_multi_hot`` sparse features are multi-hot."""
        if num_multi_hot > num_sparse:
            raise ValueError(f"num_multi_hot ({num_multi_hot}) cannot exceed num_sparse ({num_sparse})")
        return cls(
            dense=tuple(f"int_{i}" for i in range(num_dense)),
            sparse=tuple(
                SparseFeature(f"cat_{i}", cardinality, multi_hot=i >= num_sparse - num_multi_hot)
                for i in range(num_sparse)
            ),
        )
