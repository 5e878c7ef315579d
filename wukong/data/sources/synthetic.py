"""A Criteo-shaped generator whose labels come from a planted model with interactions of order 2-4.

Rows have 13 non-negative integer dense features (log-normal counts) and ``num_sparse`` categorical
ids drawn from a Zipf law over each feature's ``cardinality`` values (the popular ids differ per
feature). Every (feature, id) has a hidden vector ``v ∈ R^r``; the label is Bernoulli with

.. math::
    \\text{logit} = b + \\sum_j w_j z_j
      + \\sum_{S \\in P_2 \\cup P_3 \\cup P_4} c_{|S|} \\sum_{t=1}^{r} \\prod_{f \\in S} v_{f, x_f}[t]

where ``z`` are the standardised log-dense values and ``P_m`` are fixed random sets of m sparse
features. Each order's terms are scaled to unit variance, so a model that cannot represent
interactions of order 3 and 4 leaves a measurable part of the signal unexplained. Rows are
generated in fixed chunks from ``(seed, chunk index)``: the same seed gives the same rows, however
they are later split or sharded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from wukong.data.sources.base import RawChunk, Source, SourceSpec

CHUNK_ROWS = 65_536
LATENT_DIM = 8
LATENT_ROWS = 1 << 16  # hidden vectors per feature (ids beyond share them by hashing)
INTERACTIONS = {2: 6, 3: 4, 4: 3}  # order -> number of planted feature sets


@dataclass
class PlantedModel:
    dense_mu: np.ndarray
    dense_sigma: np.ndarray
    dense_weights: np.ndarray
    permutations: list[np.ndarray]
    latent: np.ndarray  # (num_sparse, LATENT_ROWS, LATENT_DIM)
    interactions: dict[int, list[tuple[int, ...]]]
    bias: float

    @classmethod
    def draw(cls, seed: int, num_dense: int, num_sparse: int, cardinality: int) -> PlantedModel:
        rng = np.random.default_rng([seed, 0x5EED])
        sets = {
            order: [tuple(sorted(rng.choice(num_sparse, order, replace=False))) for _ in range(count)]
            for order, count in INTERACTIONS.items()
            if order <= num_sparse
        }
        return cls(
            dense_mu=rng.uniform(0.0, 3.0, num_dense),
            dense_sigma=rng.uniform(0.5, 1.5, num_dense),
            dense_weights=rng.normal(0.0, 1.0 / np.sqrt(max(num_dense, 1)), num_dense),
            permutations=[rng.permutation(cardinality) for _ in range(num_sparse)],
            latent=rng.normal(0.0, 1.0, (num_sparse, min(LATENT_ROWS, cardinality), LATENT_DIM)).astype(np.float32),
            interactions=sets,
            bias=-1.0,
        )

    def terms(self, dense: np.ndarray, ids: np.ndarray) -> dict[int, np.ndarray]:
        """The logit's parts by interaction order (1 = dense), each ``(rows,)``."""
        z = (np.log1p(dense) - self.dense_mu) / self.dense_sigma
        parts = {1: z @ self.dense_weights if dense.shape[1] else np.zeros(len(ids))}
        rows = ids % self.latent.shape[1]
        for order, sets in self.interactions.items():
            total = np.zeros(len(ids), dtype=np.float64)
            for features in sets:
                product = np.ones((len(ids), LATENT_DIM), dtype=np.float32)
                for f in features:
                    product *= self.latent[f, rows[:, f]]
                total += product.sum(axis=1) / np.sqrt(LATENT_DIM)  # unit variance per set
            parts[order] = total / np.sqrt(len(sets))  # unit variance per order
        return parts

    def logits(self, dense: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.bias + sum(self.terms(dense, ids).values())


class SyntheticSource(Source):
    name = "synthetic"

    def __init__(
        self,
        rows: int,
        seed: int = 0,
        num_dense: int = 13,
        num_sparse: int = 26,
        cardinality: int = 10_000,
        zipf_exponent: float = 1.1,
    ) -> None:
        if rows < 1:
            raise ValueError(f"--rows must be >= 1 for the synthetic source, got {rows}")
        self.rows, self.seed, self.cardinality, self.zipf_exponent = rows, seed, cardinality, zipf_exponent
        self.spec = SourceSpec(
            label="label",
            dense=tuple(f"int_{i}" for i in range(num_dense)),
            sparse=tuple((f"cat_{i}", False) for i in range(num_sparse)),
        )
        self.model = PlantedModel.draw(seed, num_dense, num_sparse, cardinality)
        weights = np.arange(1, cardinality + 1, dtype=np.float64) ** -zipf_exponent
        self.cdf = np.cumsum(weights / weights.sum())

    @property
    def total_rows(self) -> int:
        return self.rows

    def generate(self, chunk_index: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dense, ids, labels) of one chunk."""
        rng = np.random.default_rng([self.seed, chunk_index])
        num_dense, num_sparse = len(self.spec.dense), len(self.spec.sparse)
        dense = np.floor(np.exp(rng.normal(self.model.dense_mu, self.model.dense_sigma, (count, num_dense)))) - 1
        ranks = np.minimum(np.searchsorted(self.cdf, rng.random((count, num_sparse))), len(self.cdf) - 1)
        ids = np.stack([self.model.permutations[f][ranks[:, f]] for f in range(num_sparse)], axis=1)
        probability = 1.0 / (1.0 + np.exp(-self.model.logits(np.maximum(dense, 0), ids)))
        labels = (rng.random(count) < probability).astype(np.int64)
        return dense.astype(np.int64), ids.astype(np.int64), labels

    def chunks(self) -> Iterator[RawChunk]:
        for index, start in enumerate(range(0, self.rows, CHUNK_ROWS)):
            dense, ids, labels = self.generate(index, min(CHUNK_ROWS, self.rows - start))
            yield RawChunk.generated(self.spec, labels, dense, ids)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": self.rows,
            "seed": self.seed,
            "cardinality": self.cardinality,
            "zipf_exponent": self.zipf_exponent,
            "planted_interactions": {
                str(k): [list(map(int, s)) for s in v] for k, v in self.model.interactions.items()
            },
        }
