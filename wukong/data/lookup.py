"""Positions of values in a fixed array of distinct values (a vocabulary), built once, looked up often.

``pyarrow.compute.index_in`` rebuilds its hash table of the value set on every call, which costs
O(V) per chunk for a vocabulary of V values. :class:`ValueIndex` instead puts a 64-bit key per
vocabulary value in a hash table once (:class:`wukong.data.compiled.KeyTable`) and answers each query
with a probe (O(1) per value):

- integers: the value itself, so equal keys are equal values;
- bytes and strings: the first 8 bytes, big-endian, zero-padded; a found key is confirmed by comparing
  lengths (values of at most 8 bytes: same key and length is same value) or else the whole values, so
  a query that shares only its first 8 bytes with a vocabulary value is absent.

When two vocabulary values share a key (strings that agree on their first 8 bytes) or the type has no
key, it falls back to ``index_in``, so every answer is exact.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ABSENT = -1
_PREFIX = 8


def string_lengths(array: pa.Array) -> np.ndarray:
    """Each value's length in bytes (0 for a null) of a binary or string array, from its offsets."""
    if not len(array):
        return np.zeros(0, np.int64)
    large = pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type)
    offsets = np.frombuffer(array.buffers()[1], np.int64 if large else np.int32)
    return np.diff(offsets[array.offset : array.offset + len(array) + 1])


def _string_keys(array: pa.Array) -> np.ndarray:
    """The first 8 bytes of each value as a big-endian uint64 (shorter values zero-padded; null → 0)."""
    large = pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type)
    _, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, np.int64 if large else np.int32)[array.offset : array.offset + len(array) + 1]
    full = np.diff(offsets)
    if data is not None and ((full == 0) | (full == _PREFIX)).all():  # e.g. hex ids or blank: no gather
        keys = np.zeros(len(array), np.uint64)
        keys[full == _PREFIX] = np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]].view(">u8")
        return keys
    starts, lengths = offsets[:-1].astype(np.int64), np.minimum(full, _PREFIX)
    columns = np.arange(_PREFIX)
    inside = columns < lengths[:, None]
    if data is None or not inside.any():
        return np.zeros(len(array), np.uint64)
    data = np.frombuffer(data, np.uint8)
    padded = np.where(inside, data[np.where(inside, starts[:, None] + columns, 0)], 0).astype(np.uint8)
    return padded.view(">u8").ravel().astype(np.uint64)


_STRINGS = (pa.types.is_binary, pa.types.is_string, pa.types.is_large_binary, pa.types.is_large_string)


def _keys(array: pa.Array) -> np.ndarray | None:
    """A uint64 key per value (see the module's text), or None for a type without one."""
    if pa.types.is_integer(array.type):
        return pc.fill_null(array, 0).to_numpy().astype(np.int64).view(np.uint64)
    if any(test(array.type) for test in _STRINGS):
        return _string_keys(array) if len(array) else np.zeros(0, np.uint64)
    return None


class ValueIndex:
    """``positions(query)``: where each query value sits in ``values`` (distinct), :data:`ABSENT` if nowhere."""

    def __init__(self, values: pa.Array) -> None:
        from wukong.data.compiled import KeyTable  # Numba loads on first use

        self.values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        self.verify = not pa.types.is_integer(self.values.type)  # string keys are prefixes
        self.table: KeyTable | None = None
        keys = _keys(self.values)
        if keys is not None:
            self.lengths = string_lengths(self.values) if self.verify else None
            table = KeyTable(keys)
            self.table = table if table.distinct else None

    def positions(self, query: pa.Array) -> np.ndarray:
        """int64 positions into ``values``; a null or absent value → :data:`ABSENT`."""
        query = query.combine_chunks() if isinstance(query, pa.ChunkedArray) else query
        if query.type != self.values.type:
            query = query.cast(self.values.type)
        if self.table is None:
            found = pc.index_in(query, value_set=self.values)
            return pc.fill_null(found, ABSENT).to_numpy(zero_copy_only=False).astype(np.int64)
        positions = self.table.find(_keys(query))
        found = positions >= 0
        if query.null_count:
            found &= query.is_valid().to_numpy(zero_copy_only=False)
        if self.verify and found.any():
            positions = np.where(found, positions, 0)  # the checks below index by every position
            lengths = string_lengths(query)
            found &= lengths == self.lengths[positions]
            if (lengths > _PREFIX).any():  # same first 8 bytes and length: compare the rest
                same = pc.equal(query, self.values.take(pa.array(positions)))
                found &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        return np.where(found, positions, ABSENT)
