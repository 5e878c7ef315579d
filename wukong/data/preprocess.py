"""Turning raw columns into model inputs: categorical ids, dense transforms, splits, statistics.

Everything here is fitted on the training split only and applied to every split, chunk by chunk, so
memory stays bounded by the chunk size and the vocabularies.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wukong.data.lookup import ValueIndex

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
OOV_ID = 0


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (SplitMix64's finaliser): ids → well-spread pseudo-random words."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_from_ids(row_ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded uniform [0, 1) number per row id, independent of how rows are chunked."""
    words = splitmix64(row_ids.astype(np.uint64) ^ splitmix64(np.array([seed], dtype=np.uint64)))
    return (words >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class RatioSplit:
    """Rows go to train/valid/test with the given probabilities, by a seeded hash of their row id."""

    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.train, self.valid, self.test) < 0 or not math.isclose(self.train + self.valid + self.test, 1):
            raise ValueError(f"split ratios must be >= 0 and sum to 1, got {self.train}, {self.valid}, {self.test}")

    def assign(self, row_ids: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        u = uniform_from_ids(row_ids, self.seed)
        return (u >= self.train).astype(np.int8) + (u >= self.train + self.valid).astype(np.int8)

    def describe(self) -> dict:
        return {"by": "ratio", "train": self.train, "valid": self.valid, "test": self.test, "seed": self.seed}


@dataclass(frozen=True)
class TimeSplit:
    """The oldest rows train, the newest test: ``time < valid_start`` → train, ``≥ test_start`` → test."""

    valid_start: float
    test_start: float

    def assign(self, row_ids: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        if times is None:
            raise ValueError("a time split needs a time column")
        return (times >= self.valid_start).astype(np.int8) + (times >= self.test_start).astype(np.int8)

    def describe(self) -> dict:
        return {"by": "time", "valid_start": self.valid_start, "test_start": self.test_start}


@dataclass(frozen=True)
class ColumnSplit:
    """A split fixed upstream: each row goes to the split its ``column`` names (``train``, ``valid``, ``test``)."""

    column: str

    def assign(self, row_ids: np.ndarray, values: pa.Array | pa.ChunkedArray | None = None) -> np.ndarray:
        if values is None:
            raise ValueError("a column split needs the split column")
        names = pc.cast(values, pa.string())
        codes = np.full(len(names), -1, dtype=np.int8)
        for name, code in SPLIT_CODES.items():
            codes[pc.fill_null(pc.equal(names, name), False).to_numpy(zero_copy_only=False)] = code
        if (codes < 0).any():
            bad = names.take([int(np.flatnonzero(codes < 0)[0])])[0].as_py()
            raise ValueError(f"split column {self.column!r} holds {bad!r}; every row must say train, valid or test")
        return codes

    def describe(self) -> dict:
        return {"by": "column", "column": self.column}


class Reservoir:
    """A uniform random sample of at most ``size`` values of a stream (Algorithm R, vectorised per chunk).

    The first ``size`` values fill the sample; value ``i`` (0-based, over the whole stream) after that
    draws a slot ``j`` uniformly from ``0..i`` and replaces the value there when ``j < size``. After
    ``n`` values each of them is in the sample with probability ``min(1, size / n)``.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.sample = np.empty(0, dtype=np.float64)
        self.seen = 0

    def add(self, values: np.ndarray) -> None:
        fill = min(self.size - len(self.sample), len(values))
        self.sample = np.concatenate([self.sample, values[:fill]]) if fill else self.sample
        rest = values[fill:]
        if len(rest):
            slots = self.rng.integers(0, self.seen + fill + np.arange(1, len(rest) + 1))
            keep = slots < self.size
            slots, rest = slots[keep], rest[keep]
            # A slot drawn twice in this chunk keeps the later value, as the one-by-one algorithm would.
            last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
            self.sample[slots[last]] = rest[last]
        self.seen += len(values)


def transform_dense(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    r"""``log(1 + max(x, 0))`` as float32; a missing value becomes 0 (the transform of 0).

    Computed in float64 and rounded once. Integer columns take one compiled pass
    (:func:`wukong.data.compiled.log1p_counts`: counts below 2**16, most of them, read the same numbers
    from a table); other columns, and integers beyond 2**53 (whose float64 cast is checked, and fails),
    go through Arrow's cast.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_integer(values.type) and len(values) and not pa.types.is_uint64(values.type):
        from wukong.data.compiled import log1p_counts  # Numba loads on first use

        validity, data = values.buffers()[:2]
        raw = np.frombuffer(data, values.type.to_pandas_dtype())[values.offset :][: len(values)]
        bits = (
            np.frombuffer(validity, np.uint8) if validity is not None and values.null_count else np.zeros(0, np.uint8)
        )
        out = log1p_counts(raw.astype(np.int64, copy=False), bits, values.offset)
        if out is not None:
            return out
    x = pc.fill_null(pc.cast(values, pa.float64()), 0.0).to_numpy()
    return np.log1p(np.maximum(x, 0.0)).astype(np.float32)


@dataclass
class DenseStats:
    """Streaming count, mean, std, min, max of one transformed dense feature."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def update(self, x: np.ndarray) -> None:
        if x.size:
            self.count += x.size
            self.total += float(x.sum(dtype=np.float64))
            self.total_sq += float(np.square(x, dtype=np.float64).sum())
            self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))

    def merge(self, other: DenseStats) -> None:
        """Add the statistics of other rows (another part of the input)."""
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    def to_dict(self) -> dict:
        mean = self.total / self.count if self.count else 0.0
        var = max(self.total_sq / self.count - mean * mean, 0.0) if self.count else 0.0
        return {"count": self.count, "mean": mean, "std": math.sqrt(var), "min": self.low, "max": self.high}


def _flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.list_flatten(values) if pa.types.is_list(values.type) or pa.types.is_large_list(values.type) else values


def _by_code(codes: np.ndarray, indices: pa.Array, missing: int) -> np.ndarray:
    """``codes[i]`` for each dictionary index ``i`` of a dictionary array; a null index → ``missing``."""
    if not len(codes):
        return np.full(len(indices), missing, np.int32)
    picked = codes[(pc.fill_null(indices, 0) if indices.null_count else indices).to_numpy()]
    if indices.null_count:
        picked[~indices.is_valid().to_numpy(zero_copy_only=False)] = missing
    return picked


def _relist(template: pa.Array | pa.ChunkedArray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, ids) of a list column whose flattened values were encoded to ``ids``."""
    if isinstance(template, pa.ChunkedArray):
        template = template.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(template), 0).to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, ids


class CategoricalEncoder:
    """Values → ids; subclasses fit on training columns and map flat values in :meth:`encode_flat`.

    A column may come dictionary-encoded (as ``prepare`` spools it): then each distinct value is
    counted, looked up or hashed once, and its rows take the result by their dictionary index.
    """

    def merge(self, other: CategoricalEncoder) -> None:
        """Add what ``other`` fitted on other rows (another part of the input); nothing to add by default."""

    def compact(self) -> None:
        """Shrink what was fitted so far to its smallest form before it is sent on; nothing by default."""

    def encode_flat(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, column: pa.Array | pa.ChunkedArray, multi_hot: bool):
        """int32 ids, or ``(offsets, ids)`` for a list column."""
        ids = self.encode_flat(column)
        return _relist(column, ids) if multi_hot else ids


@dataclass
class FrequencyVocabulary(CategoricalEncoder):
    """Ids by descending training frequency: values seen at least ``min_count`` times get ``1..V``
    (ties broken by value), everything else the out-of-vocabulary id 0. Cardinality ``V + 1``.
    """

    min_count: int = 1
    max_size: int | None = None
    _counts: list[pa.Table] = field(default_factory=list)
    values: pa.Array | None = None
    counts: np.ndarray | None = None

    _indexes: dict[str, ValueIndex] = field(default_factory=dict, repr=False)  # by query type, built on use

    def fit(self, column: pa.Array | pa.ChunkedArray) -> None:
        flat = _flat(column)
        if pa.types.is_dictionary(flat.type):
            counts = np.bincount(flat.indices.drop_null().to_numpy(), minlength=len(flat.dictionary))
            seen = np.flatnonzero(counts)
            self._add(pa.table({"value": flat.dictionary.take(pa.array(seen)), "count": counts[seen]}))
        else:
            counted = pc.value_counts(flat.drop_null())
            self._add(pa.table({"value": counted.field("values"), "count": counted.field("counts")}))

    def merge(self, other: FrequencyVocabulary) -> None:
        for counted in other._counts:
            self._add(counted)

    def compact(self) -> None:
        """One (value, count) table for everything counted so far: what a worker sends back is one row
        per distinct value of its rows, not one per distinct value of each chunk."""
        if len(self._counts) > 1:
            self._counts = [self._merged()]

    def _add(self, counted: pa.Table) -> None:
        self._counts.append(counted)
        if len(self._counts) >= 16:
            self._counts = [self._merged()]

    def _merged(self) -> pa.Table:
        """One (value, count) row per distinct value of the tables counted so far (rows in no order)."""
        table = pa.concat_tables(self._counts).combine_chunks()
        if not table.num_rows:
            return table
        values = pc.dictionary_encode(table.column("value").chunk(0))
        counts = np.bincount(values.indices.to_numpy(), table.column("count").to_numpy(), len(values.dictionary))
        return pa.table({"value": values.dictionary, "count": counts.astype(np.int64)})  # exact below 2**53

    def finish(self) -> None:
        if not self._counts:
            self.values, self.counts = pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
            return
        table = self._merged().filter(pc.field("count") >= self.min_count)
        table = table.sort_by([("count", "descending"), ("value", "ascending")])
        if self.max_size is not None:
            table = table.slice(0, self.max_size)
        self.values, self.counts = table.column("value").combine_chunks(), table.column("count").to_numpy()
        self._counts = []
        self._indexes = {}

    def reset_index(self) -> None:
        """Forget the look-up indexes built so far (call after replacing ``values``)."""
        self._indexes = {}

    @property
    def cardinality(self) -> int:
        return len(self.values) + 1

    def encode_flat(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        flat = _flat(column)
        if pa.types.is_dictionary(flat.type):
            return _by_code(self._ids(flat.dictionary), flat.indices, OOV_ID)
        return self._ids(flat)

    def _ids(self, values: pa.Array) -> np.ndarray:
        """``1 + position`` in the vocabulary, 0 for a missing or unseen value (the vocabulary is compared
        in the values' type, as ``index_in(values, vocabulary.cast(values.type))`` would)."""
        key = str(values.type)
        if key not in self._indexes:
            self._indexes[key] = ValueIndex(self.values.cast(values.type))
        return (self._indexes[key].positions(values) + 1).astype(np.int32)

    def describe(self) -> dict:
        return {"mode": "frequency", "min_count": self.min_count, "max_size": self.max_size, "oov_id": OOV_ID}


@dataclass
class HashEncoder(CategoricalEncoder):
    """``id = hash(value) mod size``: no vocabulary, fixed table size, collisions allowed.

    Integers are mixed with :func:`splitmix64` (xor ``salt``), other values hashed with BLAKE2b. A
    missing value hashes like 0 (integers) or the empty string (others), whatever the chunk.
    """

    size: int
    salt: int = 0

    def fit(self, column: pa.Array | pa.ChunkedArray) -> None:
        pass

    def finish(self) -> None:
        pass

    @property
    def cardinality(self) -> int:
        return self.size

    def encode_flat(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        flat = _flat(column)
        if pa.types.is_dictionary(flat.type):
            missing = self.encode_flat(pa.array([None], flat.dictionary.type))[0]
            return _by_code(self.encode_flat(flat.dictionary), flat.indices, missing)
        if pa.types.is_integer(flat.type):
            words = splitmix64(pc.fill_null(flat, 0).to_numpy().astype(np.uint64) ^ np.uint64(self.salt))
            return (words % np.uint64(self.size)).astype(np.int32)
        encoded = pc.dictionary_encode(flat, null_encoding="encode")  # a missing value is an entry too
        dictionary = encoded.dictionary.to_pylist()
        hashed = np.array(
            [int.from_bytes(hashlib.blake2b(_as_bytes(v), digest_size=8).digest(), "little") for v in dictionary],
            dtype=np.uint64,
        )
        codes = (hashed % np.uint64(self.size)).astype(np.int32)
        return codes[encoded.indices.to_numpy()] if len(codes) else np.zeros(len(flat), np.int32)

    def describe(self) -> dict:
        return {"mode": "hash", "size": self.size}


def _as_bytes(value) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()
