r"""Loops the data stages run over every value, compiled with Numba: a hash table of 64-bit keys, and
the dense transform.

Each was a chain of whole-array NumPy or Arrow passes (a sort and binary searches, masks, casts,
gathers); one compiled pass reads each value once. They are imported on first use, so commands that
never touch a row do not load Numba.

The hash table is open addressing with linear probing over ``2^b ≥ 2n`` slots (load at most ½), and
Fibonacci hashing picks a key's first slot:

.. math::
    \mathrm{slot}(k) = \big\lfloor (k \cdot \lfloor 2^{64}/\varphi \rfloor \bmod 2^{64}) / 2^{64-b} \big\rfloor

so consecutive or patterned keys (the bytes of hex ids, small integers) still spread over the slots.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

# Each loop is compiled for the types it is called with, when this module is imported (from Numba's
# cache on disk after the first time), so ingest workers forked from a server that imported it start
# ready. Inputs are declared read-only: NumPy arrays over Arrow or ``bytes`` buffers are, and a
# writable array converts.
U8, I64, U64, F32 = (
    types.Array(t, 1, "C", readonly=True) for t in (types.uint8, types.int64, types.uint64, types.float32)
)
U64_2D = types.Array(types.uint64, 2, "C", readonly=True)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
EXACT_INT = 1 << 53  # integers up to this size convert to float64 exactly
SMALL = 1 << 16  # integers below this read log(1 + x) from a table
LOG1P_SMALL = np.log1p(np.arange(SMALL, dtype=np.float64)).astype(np.float32)


def jit(signature):
    """Numba's ``njit`` for ``signature``, compiled now, without the GIL, kept in Numba's disk cache (beside
    the source, else in the user's cache folder); where no folder is writable (a read-only container),
    compiled afresh at each start instead of failing."""

    def compile_(function):
        try:
            return njit(signature, cache=True, nogil=True)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(signature, nogil=True)(function)

    return compile_


def table_bits(count: int) -> int:
    """``b`` of a table for ``count`` keys: the smallest with ``2^b ≥ 2·count`` (at least 1)."""
    return max(1, (2 * max(count, 1) - 1).bit_length())


@jit(types.int64(types.uint64, types.uint64))
def _first_slot(key, shift):  # pragma: no cover (compiled)
    return np.int64((key * _GOLDEN) >> shift)


@jit(types.none(U64_2D, types.int32[:, ::1], types.uint64[:, ::1], types.int64[::1]))
def dictionary_encode(keys, codes, dictionary, sizes) -> None:  # pragma: no cover (compiled)
    """Per row ``j`` of ``keys``: ``codes[j, i]`` the first-appearance index of ``keys[j, i]`` among the
    row's keys, the distinct keys in ``dictionary[j, :sizes[j]]`` (as ``pyarrow.compute.dictionary_encode``
    numbers values)."""
    columns, rows = keys.shape
    bits = 1
    while (1 << bits) < 2 * rows:
        bits += 1
    mask, shift = (1 << bits) - 1, np.uint64(64 - bits)
    slots = np.empty(1 << bits, np.int32)
    for j in range(columns):
        slots[:] = -1
        size = 0
        for i in range(rows):
            key = keys[j, i]
            slot = _first_slot(key, shift)
            while True:
                code = slots[slot]
                if code < 0:
                    slots[slot], dictionary[j, size], codes[j, i] = size, key, size
                    size += 1
                    break
                if dictionary[j, code] == key:
                    codes[j, i] = code
                    break
                slot = (slot + 1) & mask
        sizes[j] = size


@jit(types.none(U64, I64, types.int64, U64, types.int64[::1]))
def _probe(keys, slots, bits, queries, out) -> None:  # pragma: no cover (compiled)
    mask, shift = slots.shape[0] - 1, np.uint64(64 - bits)
    for i in range(queries.shape[0]):
        query = queries[i]
        slot = _first_slot(query, shift)
        while True:
            position = slots[slot]
            if position < 0 or keys[position] == query:
                out[i] = position
                break
            slot = (slot + 1) & mask


@jit(types.boolean(U64, types.int64[::1], types.int64))
def _insert(keys, slots, bits) -> bool:  # pragma: no cover (compiled)
    mask, shift = slots.shape[0] - 1, np.uint64(64 - bits)
    distinct = True
    for position in range(keys.shape[0]):
        key = keys[position]
        slot = _first_slot(key, shift)
        while slots[slot] >= 0 and keys[slots[slot]] != key:
            slot = (slot + 1) & mask
        if slots[slot] >= 0:
            distinct = False
        else:
            slots[slot] = position
    return distinct


class KeyTable:
    """Where each of some 64-bit keys sits: ``find(queries)`` gives positions, -1 if absent.

    ``distinct`` says whether the keys were all different; if not, a key found is one of its positions.
    """

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = np.ascontiguousarray(keys, np.uint64)
        self.bits = table_bits(len(self.keys))
        self.slots = np.full(1 << self.bits, -1, np.int64)
        self.distinct = _insert(self.keys, self.slots, self.bits)

    def find(self, queries: np.ndarray) -> np.ndarray:
        out = np.empty(len(queries), np.int64)
        _probe(self.keys, self.slots, self.bits, np.ascontiguousarray(queries, np.uint64), out)
        return out


@jit(types.int64(I64, U8, types.int64, F32, types.float32[::1]))
def _log1p_counts(values, validity, offset, table, out) -> int:  # pragma: no cover (compiled)
    large = 0
    for i in range(values.shape[0]):
        bit = offset + i
        x = values[i] if validity.shape[0] == 0 or (validity[bit >> 3] >> (bit & 7)) & 1 else 0
        if x > EXACT_INT or x < -EXACT_INT:
            return -1
        if x < 0:
            x = 0
        if x < table.shape[0]:
            out[i] = table[x]
        else:
            out[i] = np.nan
            large += 1
    return large


def log1p_counts(values: np.ndarray, validity: np.ndarray, offset: int = 0) -> np.ndarray | None:
    r"""``log(1 + max(x, 0))`` as float32 of int64 ``values``, a missing value as 0; None if any value is
    beyond ``±2^53`` (its float64 cast would not be exact).

    ``validity``: Arrow's bitmap (bit ``offset + i`` set: value ``i`` present; empty: all present).
    Values below :data:`SMALL` read the table; larger ones are computed by NumPy in float64 and rounded
    once, exactly as before this loop was compiled.
    """
    out = np.empty(len(values), np.float32)
    large = _log1p_counts(values, validity, offset, LOG1P_SMALL, out)
    if large < 0:
        return None
    if large:
        where = np.flatnonzero(np.isnan(out))
        out[where] = np.log1p(values[where].astype(np.float64)).astype(np.float32)
    return out
