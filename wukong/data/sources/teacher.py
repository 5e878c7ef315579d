r"""A synthetic *teacher*: labels drawn from a known random network, so every row's true probability is known.

Scaling-law studies need data on which capacity pays (a target with structure small models cannot
represent, and enough rows to learn it) and an axis that shows the *reducible* loss. This source
gives both: its labels are Bernoulli draws from a fixed random function ``p(x)`` of the row, and each
row carries ``p(x)`` itself (the column :data:`ORACLE_COLUMN`), which ``wukong data prepare`` stores
beside the shards. A model's LogLoss minus the oracle's LogLoss on the same rows is its **excess
LogLoss**; the oracle's LogLoss is the Bayes limit no model can beat.

The generator
-------------
A row has ``F`` categorical fields and ``D`` dense counts. Field ``f`` has ``c_f`` ids (log-spaced
between ``max_cardinality / 10`` and ``max_cardinality``) drawn from a Zipf law with exponent ``a``
over a random permutation of its ids; dense value ``j`` is ``x_j = ⌊exp(μ_j + σ_j ε)⌋``, ``ε ~ N(0, 1)``.
Each id owns a latent vector ``E_f[i] ∈ R^r`` (i.i.d. ``N(0, 1)``); the dense counts form one more
"field" ``f = 0`` whose latent vector is ``z = (log(1 + x) − μ) / σ ∈ R^D``.

The teacher has ``K`` *product units*. Unit ``k`` has an order ``m_k = 1 + (k mod M)`` (orders
``1..M`` in equal numbers) and a random set ``S_k`` of ``m_k`` distinct fields (dense included):

.. math::
    \phi_{k,f}(e) = \frac{\tanh(\gamma\, a_{k,f}^\top e / \sqrt{\dim e} + \beta_{k,f}) - \mu_{k,f}}{\sigma_{k,f}},
    \qquad u_k(x) = \prod_{f \in S_k} \phi_{k,f}\big(e_f(x_f)\big)

with ``a ~ N(0, I)``, ``β ~ N(0, 1/4)``, gain ``γ = 1.5``, and ``μ, σ`` the factor's mean and
standard deviation under the data distribution (exact for fields, from a calibration sample for the
dense field), so every factor, and (fields being independent) every unit, has mean 0 and variance 1.

With a *unit rank* ``R > 1`` (``unit_rank``; default 1, the form above) each unit sums ``R`` such
products, each with factors of its own on the same fields:

.. math::
    u_k(x) = \frac{1}{\sqrt R} \sum_{j=1}^{R} \prod_{f \in S_k} \phi_{k,j,f}\big(e_f(x_f)\big)

For order 2 that is ``⟨ψ_{k,a}, ψ_{k,b}⟩ / √R``, a dot product of two per-field feature vectors
``ψ_{k,f} = (φ_{k,1,f}, …, φ_{k,R,f})``: the factorization machine's form, over a unit's own axis.
Each product still has mean 0 and variance 1, but a unit's R products read the same fields and are
correlated, so its variance is only near 1 (0.25-1.8 across units at R = 8); the calibration of
``s`` below sets the logit's scale either way.
A random tanh network of width ``H`` reads the units out:

.. math::
    s(x) = \tfrac{1}{\sqrt H}\, v^\top \tanh\!\big(\rho\, W u(x) / \sqrt K + c\big),
    \qquad \ell(x) = b + \frac{s(x) - \bar s}{T\, \mathrm{sd}(s)},
    \qquad p(x) = \sigma(\ell(x)),\qquad y \sim \mathrm{Bernoulli}(p(x))

``W, v ~ N(0, 1)``, ``c ~ N(0, 1/4)``, ``ρ = 1.5``; ``s̄, sd(s)`` come from a calibration sample so
the logit has standard deviation ``1/T`` (``T``: the *label temperature*; lower is less noisy), and
the bias ``b`` is solved on the same sample so the mean of ``p`` is ``positive_rate``.

How the teacher relates to the students
---------------------------------------
It is none of the students, but it is not equally far from each (an earlier version of this text
called it neutral; the measurements and the argument below say otherwise):

- **Dot-product families (Wukong's FMB, DLRM, FM) are far from it.** A unit multiplies scalar
  nonlinear features of different fields, each through its own projection and tanh. A dot product
  ``⟨e_i, e_j⟩`` sums products over a *shared* latent coordinate, so it can hold a unit only if both
  fields keep that unit's factor in a coordinate of their own, and it still sums every unit the two
  fields share into one number.
- **Stacked DCNv2 nearly contains it.** Let each id's embedding hold its field's factors
  ``φ_{k,f}`` in its coordinates (``d ≥ K_f``, the units using the field: about 19 per field at the
  defaults, ``K·(M+1)/2`` field slots over ``F + 1`` fields). A cross ``x₀ ⊙ (W x_l + b)`` whose ``W``
  selects the partner field's coordinate of the same unit forms an order-2 unit in one coordinate,
  ``m − 1`` cross layers form an order-m unit (up to the lower-order terms of the residual), and the
  deep MLP can be the tanh readout. A learned ``W`` is dense, but that selection is one of its values.
  FinalMLP's bilinear heads also multiply single coordinates of two streams.
- **Orders** are ``1..M`` in equal shares, not powers of two (stacked FMBs) nor ``l + 1`` (``l``
  cross layers); the readout is a generic tanh MLP, the one part every student shares.

So at ``R = 1`` the families that multiply single coordinates of the flattened embeddings (DCNv2,
FinalMLP) start closer to the target than the dot-product families (Wukong, DLRM), and they lead at
every size measured (docs/scaling.md, docs/results-small-ctr.md). Read a comparison on this teacher
as a test of how well a family approximates products of per-field features, not as a neutral one.
A unit rank ``R > 1`` moves the target towards the dot-product families: a cross layer then needs
``R`` coordinates per unit in each field and its MLP must sum them, while a dot product sums over a
shared axis by construction (it still needs the fields' embeddings to hold each unit's vectors).

Reproducibility and memory: the teacher is drawn from ``(seed, tag)`` and rows are generated in
fixed chunks from ``(seed, chunk index)``, so the same seed gives the same rows and probabilities
however they are later split or sharded (bit for bit on one machine; elsewhere up to the float32
rounding of the vectorised ``tanh``). Each field's factors are tabulated once per id, so memory is
those tables (``R · Σ_f K_f · c_f`` floats, ``K_f``: units using field f) plus one chunk of
:data:`CHUNK_ROWS` rows, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from wukong.data.errors import DataError
from wukong.data.sources.base import ORACLE_COLUMN, RawChunk, Source, SourceSpec

CHUNK_ROWS = 65_536
CALIBRATION_ROWS = 1 << 17
FACTOR_GAIN = 1.5  # γ: how far into tanh's nonlinearity each factor reaches
READOUT_GAIN = 1.5  # ρ: the same for the readout network
_TEACHER_TAG, _CALIBRATION_TAG, _CHUNK_TAG = 0x7EAC, 0xCA1B, 0xC4E5


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher's shape (see the module docstring for the math)."""

    num_sparse: int = 16  # F, categorical fields
    num_dense: int = 4  # D, dense counts (0: none)
    max_cardinality: int = 2000  # c_f log-spaced from max_cardinality // 10 to this
    zipf_exponent: float = 1.0  # a, popularity skew of the ids
    latent_dim: int = 8  # r, latent vector per id
    order: int = 4  # M, highest interaction order (units of orders 1..M in equal numbers)
    width: int = 128  # K, product units
    hidden: int = 128  # H, width of the readout network
    unit_rank: int = 1  # R: each unit sums R products of factors (1: one product, the default teacher)
    temperature: float = 0.5  # T: the logit's standard deviation is 1/T
    positive_rate: float = 0.25  # mean of p

    def __post_init__(self) -> None:
        checks = {
            "num_sparse": self.num_sparse >= 1,
            "num_dense": self.num_dense >= 0,
            "max_cardinality": self.max_cardinality >= 2,
            "zipf_exponent": self.zipf_exponent >= 0,
            "latent_dim": self.latent_dim >= 1,
            "order": 1 <= self.order <= self.num_sparse + (self.num_dense > 0),
            "width": self.width >= 1,
            "hidden": self.hidden >= 1,
            "unit_rank": self.unit_rank >= 1,
            "temperature": self.temperature > 0,
            "positive_rate": 0 < self.positive_rate < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            fields = self.num_sparse + (self.num_dense > 0)
            raise DataError(
                f"teacher source: invalid {', '.join(f'{n}={getattr(self, n)}' for n in bad)}; need fields >= 1, "
                f"dense >= 0, cardinality >= 2, latent_dim/width/hidden/unit_rank >= 1, 1 <= order <= {fields} "
                "(the fields, dense counting as one), temperature > 0 and 0 < positive_rate < 1"
            )

    def cardinalities(self) -> list[int]:
        low = max(2, self.max_cardinality // 10)
        return [round(float(c)) for c in np.geomspace(low, self.max_cardinality, self.num_sparse)]


@dataclass
class _Field:
    """One categorical field: id sampling, and the standardised factors of the unit terms that use it."""

    cdf: np.ndarray  # (c,) cumulative popularity of rank r
    permutation: np.ndarray  # rank -> id
    terms: np.ndarray  # (K_f·R,) indices k·R + j of the terms (unit k, product j) using this field
    factors: np.ndarray  # (K_f·R, c) float32: φ_{k,j,f}(E_f[id]) for each such term and each id

    def draw(self, uniform: np.ndarray) -> np.ndarray:
        ranks = np.minimum(np.searchsorted(self.cdf, uniform), len(self.cdf) - 1)
        return self.permutation[ranks]

    def popularity(self) -> np.ndarray:
        """The probability of each id."""
        weights = np.empty(len(self.cdf))
        weights[self.permutation] = np.diff(self.cdf, prepend=0.0)
        return weights


def _factor(projection: np.ndarray, bias: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """``tanh(γ aᵀe / √dim + β)``, ``(units, rows)`` float32, for projections ``(units, dim)`` and latents
    ``(rows, dim)``."""
    pre = FACTOR_GAIN * (projection @ latent.T) / np.sqrt(latent.shape[1]) + bias[:, None]
    return np.tanh(pre.astype(np.float32))


def _standardise(factors: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each row of ``factors`` (``weights``: a distribution over columns)."""
    mean = np.average(factors, axis=1, weights=weights)
    variance = np.average((factors - mean[:, None]) ** 2, axis=1, weights=weights)
    return mean, np.sqrt(np.maximum(variance, 1e-12))


class Teacher:
    """The random network of the module docstring, drawn from ``seed``; :meth:`probability` is ``p(x)``.

    Internally rows are columns: factors and units are ``(units, rows)`` arrays, so gathering a unit's
    factors and multiplying them copies contiguous rows.
    """

    def __init__(self, config: TeacherConfig, seed: int) -> None:
        self.config = c = config
        rng = np.random.default_rng([seed, _TEACHER_TAG])
        has_dense = c.num_dense > 0
        num_fields = c.num_sparse + has_dense  # the dense counts are field 0 when present
        orders = 1 + np.arange(c.width) % c.order
        self.unit_fields = [np.sort(rng.choice(num_fields, m, replace=False)) for m in orders]
        # Unit k's R products are the "terms" k·R .. k·R + R − 1, each with its own factors on the unit's fields.
        term_orders = np.repeat(orders, c.unit_rank)
        term_fields = [fields for fields in self.unit_fields for _ in range(c.unit_rank)]
        uses = [np.array([k for k, s in enumerate(term_fields) if f in s], np.int64) for f in range(num_fields)]
        self.dense_mu = rng.uniform(0.0, 3.0, c.num_dense)
        self.dense_sigma = rng.uniform(0.5, 1.5, c.num_dense)
        self.dense_terms = uses[0] if has_dense else np.zeros(0, np.int64)
        self.dense_projection = rng.normal(0.0, 1.0, (len(self.dense_terms), c.num_dense))
        self.dense_bias = rng.normal(0.0, 0.5, len(self.dense_terms))
        self.fields: list[_Field] = []
        for f, cardinality in enumerate(c.cardinalities()):
            terms = uses[f + has_dense]
            weights = np.arange(1, cardinality + 1, dtype=np.float64) ** -c.zipf_exponent
            latent = rng.normal(0.0, 1.0, (cardinality, c.latent_dim))
            factors = _factor(
                rng.normal(0.0, 1.0, (len(terms), c.latent_dim)), rng.normal(0.0, 0.5, len(terms)), latent
            )
            field = _Field(np.cumsum(weights / weights.sum()), rng.permutation(cardinality), terms, factors)
            mean, std = _standardise(factors.astype(np.float64), field.popularity())
            field.factors = ((factors - mean[:, None]) / std[:, None]).astype(np.float32)
            self.fields.append(field)
        self.readout_in = rng.normal(0.0, 1.0, (c.hidden, c.width))
        self.readout_bias = rng.normal(0.0, 0.5, c.hidden)
        self.readout_out = rng.normal(0.0, 1.0, c.hidden)
        self._readout_in = (READOUT_GAIN * self.readout_in / np.sqrt(c.width)).astype(np.float32)
        self._readout_bias = self.readout_bias.astype(np.float32)[:, None]
        # Where each term's factors sit among the gathered factor rows (dense first, then fields in order).
        owners = np.concatenate([self.dense_terms] + [field.terms for field in self.fields])
        rows_of = [np.flatnonzero(owners == k) for k in range(c.width * c.unit_rank)]
        self._order_groups = [
            (members, np.stack([rows_of[k] for k in members]))
            for members in (np.flatnonzero(term_orders == m) for m in range(1, c.order + 1))
            if len(members)
        ]
        # Calibration: the dense factors' moments, then the score's, then the bias.
        self.dense_mean, self.dense_std = np.zeros(len(self.dense_terms)), np.ones(len(self.dense_terms))
        self.score_mean, self.score_std, self.bias = 0.0, 1.0, 0.0
        dense, ids = self.draw(np.random.default_rng([seed, _CALIBRATION_TAG]), CALIBRATION_ROWS)
        if has_dense:
            self.dense_mean, self.dense_std = _standardise(self._dense_factors(dense).astype(np.float64))
        score = self.score(dense, ids)
        self.score_mean, self.score_std = float(score.mean()), float(score.std())
        self.bias = _solve_bias((score - self.score_mean) / (self.score_std * c.temperature), c.positive_rate)

    def draw(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` rows of features: dense counts ``(count, D)`` int64 and ids ``(count, F)`` int64."""
        c = self.config
        dense = np.floor(np.exp(rng.normal(self.dense_mu, self.dense_sigma, (count, c.num_dense)))).astype(np.int64)
        uniform = rng.random((count, c.num_sparse))
        ids = np.stack([field.draw(uniform[:, f]) for f, field in enumerate(self.fields)], axis=1)
        return dense, ids.astype(np.int64)

    def _dense_factors(self, dense: np.ndarray) -> np.ndarray:
        z = (np.log1p(dense) - self.dense_mu) / self.dense_sigma
        return _factor(self.dense_projection, self.dense_bias, z)

    def units(self, dense: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``u(x)``: ``(K, rows)`` float32."""
        factors = [field.factors[:, ids[:, f]] for f, field in enumerate(self.fields)]
        if self.config.num_dense:
            standard = (self._dense_factors(dense) - self.dense_mean[:, None]) / self.dense_std[:, None]
            factors.insert(0, standard.astype(np.float32))
        gathered = np.concatenate(factors, axis=0)
        rank = self.config.unit_rank
        terms = np.empty((self.config.width * rank, len(ids)), np.float32)
        for members, rows in self._order_groups:
            product = gathered[rows[:, 0]]
            for j in range(1, rows.shape[1]):
                product *= gathered[rows[:, j]]
            terms[members] = product
        if rank == 1:
            return terms
        return terms.reshape(self.config.width, rank, len(ids)).sum(axis=1) / np.float32(np.sqrt(rank))

    def score(self, dense: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``s(x)`` before standardisation, ``(rows,)`` (float32 up to the last sum, which is float64)."""
        hidden = np.tanh(self._readout_in @ self.units(dense, ids) + self._readout_bias)
        return self.readout_out @ hidden.astype(np.float64) / np.sqrt(self.config.hidden)

    def logit(self, dense: np.ndarray, ids: np.ndarray) -> np.ndarray:
        standard = (self.score(dense, ids) - self.score_mean) / (self.score_std * self.config.temperature)
        return self.bias + standard

    def probability(self, dense: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``p(x)`` of raw rows (dense counts, ids), float64."""
        return 1.0 / (1.0 + np.exp(-self.logit(dense, ids)))


def _solve_bias(logits: np.ndarray, rate: float) -> float:
    """``b`` with ``mean(σ(logits + b)) = rate`` (bisection; the mean is increasing in b)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = (low + high) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logits + mid)))) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


class TeacherSource(Source):
    """``rows`` rows labelled by a :class:`Teacher` drawn from ``seed``, with ``p(x)`` in :data:`ORACLE_COLUMN`."""

    name = "teacher"

    def __init__(self, rows: int, seed: int = 0, config: TeacherConfig | None = None) -> None:
        if rows < 1:
            raise DataError(f"--rows must be >= 1 for the teacher source, got {rows}")
        self.rows, self.seed, self.config = rows, seed, config or TeacherConfig()
        self.teacher = Teacher(self.config, seed)
        self.spec = SourceSpec(
            label="label",
            dense=tuple(f"int_{i}" for i in range(self.config.num_dense)),
            sparse=tuple((f"cat_{i}", False) for i in range(self.config.num_sparse)),
            oracle=ORACLE_COLUMN,
        )

    @property
    def total_rows(self) -> int:
        return self.rows

    def generate(self, chunk_index: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(dense, ids, probabilities, labels) of one chunk."""
        rng = np.random.default_rng([self.seed, chunk_index, _CHUNK_TAG])
        dense, ids = self.teacher.draw(rng, count)
        probability = self.teacher.probability(dense, ids)
        labels = (rng.random(count) < probability).astype(np.int64)
        return dense, ids, probability, labels

    def chunks(self) -> Iterator[RawChunk]:
        for index, start in enumerate(range(0, self.rows, CHUNK_ROWS)):
            dense, ids, probability, labels = self.generate(index, min(CHUNK_ROWS, self.rows - start))
            yield RawChunk.generated(self.spec, labels, dense, ids, **{ORACLE_COLUMN: probability})

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": self.rows,
            "seed": self.seed,
            "teacher": asdict(self.config),
            "cardinalities": self.config.cardinalities(),
        }
