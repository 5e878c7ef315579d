r"""A compiled single pass over a block of well-formed Criteo lines: parse, check and dictionary-encode.

Arrow's CSV reader is the ingest's fallback, and its ceiling: about 100 MB/s per core on the hosts
measured (docs/benchmarks.md), before the categorical columns are dictionary-encoded and checked in
passes of their own. The Criteo format is regular enough to do all of it in one pass over the bytes,
compiled with Numba: each line is

.. math::
    \underbrace{[01]}_{\text{label}}\ \big(\texttt{\textbackslash t}\ (\texttt{-}?[0\text{-}9]^{1..18})?\big)^{13}
    \ \big(\texttt{\textbackslash t}\ ([0\text{-}9a\text{-}fA\text{-}F]^8)?\big)^{26}\ \texttt{\textbackslash n}

An 8-byte category is read as one little-endian 64-bit key (its bytes, so ``0000ABCD`` and ``0000abcd``
stay two values, as in the text), blank as the key 0, which no 8 hex digits give. Each column's keys
are encoded in order of first appearance (:func:`wukong.data.compiled.dictionary_encode`), as Arrow's
``dictionary_encode`` numbers them.

The pass is strict on purpose: on the first byte that departs from the grammar (a longer or signed
label, a 19-digit integer, a lone ``-``, a category of another length, ``\r``, an empty line, a
missing final newline) it gives up on the whole block, and the caller parses the block the
general way (:mod:`wukong.data.sources.criteo`). Blocks it accepts come out exactly as that way
would give them (tested), so the choice of path never changes a dataset.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import types

from wukong.data.compiled import U8, dictionary_encode, jit

NUM_DENSE, NUM_SPARSE = 13, 26
MAX_DIGITS = 18  # every integer of up to 18 digits fits int64; longer ones take the general path
_TAB, _NEWLINE, _MINUS, _ZERO = 9, 10, 45, 48


# byte classes: 1 a decimal digit, 2 a hex letter; 0 anything else
_CLASS = np.zeros(256, np.uint8)
_CLASS[np.frombuffer(b"0123456789", np.uint8)] = 1
_CLASS[np.frombuffer(b"abcdefABCDEF", np.uint8)] = 2


@jit(types.boolean(U8, types.int64[::1], types.int64[:, ::1], types.boolean[:, ::1], types.uint64[:, ::1]))
def _parse(buf, labels, dense, present, keys) -> bool:  # pragma: no cover (compiled; tested through scan)
    """Fill ``labels[r]``, ``dense[j, r]``, ``present[j, r]`` and ``keys[j, r]`` for every line of ``buf``;
    False at the first departure from the grammar (the arrays' contents are then meaningless).

    ``buf`` must end with a newline: every loop below stops at a byte it does not expect, so none
    reads past the last one, and no index needs a bounds check.
    """
    position = 0
    for row in range(labels.shape[0]):
        label = buf[position]
        if (label != _ZERO and label != _ZERO + 1) or buf[position + 1] != _TAB:
            return False
        labels[row] = label - _ZERO
        position += 2
        for j in range(NUM_DENSE):
            negative = buf[position] == _MINUS
            if negative:
                position += 1
            start, value = position, 0
            while _CLASS[buf[position]] == 1:
                value = value * 10 + (buf[position] - _ZERO)
                position += 1
            digits = position - start
            if digits > MAX_DIGITS or (negative and digits == 0) or buf[position] != _TAB:
                return False
            dense[j, row] = -value if negative else value
            present[j, row] = digits > 0
            position += 1
        for j in range(NUM_SPARSE):
            end = _NEWLINE if j == NUM_SPARSE - 1 else _TAB
            key = np.uint64(0)
            if buf[position] != end:
                for i in range(8):
                    byte = buf[position + i]
                    if _CLASS[byte] == 0:
                        return False
                    key |= np.uint64(byte) << np.uint64(8 * i)
                position += 8
                if buf[position] != end:
                    return False
            keys[j, row] = key
            position += 1
    return position == buf.shape[0]


def _binary_values(keys: np.ndarray) -> pa.BinaryArray:
    """The 8-byte keys back as the text they were read from (the key 0: blank)."""
    lengths = np.where(keys == 0, 0, 8).astype(np.int32)
    offsets = np.zeros(len(keys) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(keys[keys != 0]).view(np.uint8)
    return pa.Array.from_buffers(pa.binary(), len(keys), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _integers(values: np.ndarray, present: np.ndarray) -> pa.Array:
    if present.all():
        return pa.array(values)
    return pa.Array.from_buffers(
        pa.int64(), len(values), [pa.py_buffer(np.packbits(present, bitorder="little")), pa.py_buffer(values)]
    )


def scan(block: bytes, names: tuple[str, ...]) -> pa.Table | None:
    """The block's rows (label and integers as int64, categories dictionary-encoded), or None when any
    byte departs from the strict grammar of the module docstring."""
    buf = np.frombuffer(block, np.uint8)
    if not len(buf) or buf[-1] != _NEWLINE:
        return None
    rows = int(np.count_nonzero(buf == _NEWLINE))
    labels = np.empty(rows, np.int64)
    dense = np.empty((NUM_DENSE, rows), np.int64)
    present = np.empty((NUM_DENSE, rows), np.bool_)
    keys = np.empty((NUM_SPARSE, rows), np.uint64)
    if not _parse(buf, labels, dense, present, keys):
        return None
    codes = np.empty((NUM_SPARSE, rows), np.int32)
    dictionary = np.empty((NUM_SPARSE, rows), np.uint64)
    sizes = np.empty(NUM_SPARSE, np.int64)
    dictionary_encode(keys, codes, dictionary, sizes)
    columns = [pa.array(labels)]
    columns += [_integers(dense[j], present[j]) for j in range(NUM_DENSE)]
    columns += [
        pa.DictionaryArray.from_arrays(pa.array(codes[j]), _binary_values(dictionary[j, : sizes[j]]))
        for j in range(NUM_SPARSE)
    ]
    return pa.table(columns, names=list(names))
