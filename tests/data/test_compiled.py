"""The compiled loops against the NumPy and Arrow computations they replace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from numba import njit, types

from wukong.data.compiled import KeyTable, dictionary_encode, jit, log1p_counts
from wukong.data.lookup import ABSENT, ValueIndex
from wukong.data.preprocess import transform_dense


def test_key_table_finds_every_key_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    keys = np.unique(
        np.concatenate([rng.integers(0, 2**63, 5000, dtype=np.uint64) * 2, np.arange(64, dtype=np.uint64)])
    )
    keys = rng.permutation(keys)  # patterned keys (0..63) and spread ones, in no order
    table = KeyTable(keys)
    assert table.distinct
    assert np.array_equal(table.find(keys), np.arange(len(keys)))
    absent = keys[:100] + np.uint64(1)  # odd: none of the spread keys; 64 is not among the small ones
    absent = absent[~np.isin(absent, keys)]
    assert len(absent) > 50 and (table.find(absent) == -1).all()
    assert KeyTable(np.zeros(0, np.uint64)).find(keys[:3]).tolist() == [-1, -1, -1]
    assert not KeyTable(np.array([5, 7, 5], np.uint64)).distinct


def test_dictionary_encode_numbers_values_as_arrow_does() -> None:
    rng = np.random.default_rng(1)
    keys = rng.choice(np.array([0, 3, 2**64 - 1, 17, 2**40], np.uint64), size=(3, 1000))
    codes, dictionary, sizes = np.empty(keys.shape, np.int32), np.empty(keys.shape, np.uint64), np.empty(3, np.int64)
    dictionary_encode(keys, codes, dictionary, sizes)
    for j in range(3):
        expected = pc.dictionary_encode(pa.array(keys[j]))
        assert dictionary[j, : sizes[j]].tolist() == expected.dictionary.to_pylist()
        assert codes[j].tolist() == expected.indices.to_pylist()


def reference_transform(values: list[int | None]) -> np.ndarray:
    x = np.array([0 if v is None else v for v in values], np.float64)
    return np.log1p(np.maximum(x, 0.0)).astype(np.float32)


def test_log1p_of_counts_reads_nulls_from_the_bitmap_at_its_offset() -> None:
    values = [None, 5, -3, 0, 2**16 - 1, 2**16, 10**12, None, 7, 2**53]
    array = pa.array(values, pa.int64()).slice(1)  # a bitmap offset of one bit
    got = transform_dense(array)
    assert np.array_equal(got, reference_transform(values[1:]))
    small = [None, -3, 70_000, 4, None]  # int32, sliced: a copy to int64 and a bitmap offset of 2
    assert np.array_equal(transform_dense(pa.array(small, pa.int32()).slice(2)), reference_transform(small[2:]))
    assert np.array_equal(transform_dense(pa.chunked_array([[1, None], [3]])), reference_transform([1, None, 3]))
    assert log1p_counts(np.array([2**53 + 1], np.int64), np.zeros(0, np.uint8)) is None
    with pytest.raises(pa.ArrowInvalid):  # beyond 2**53: Arrow's checked cast refuses, as before
        transform_dense(pa.array([2**53 + 1]))
    floats = pa.array([1.5, None, -2.0])
    assert np.array_equal(transform_dense(floats), np.log1p(np.array([1.5, 0.0, 0.0])).astype(np.float32))


def test_value_index_finds_strings_by_key_and_checks_the_rest() -> None:
    vocabulary = pa.array([b"0000abcd", b"", b"ab", b"abcdefgh-long", b"abcdefgh-other", b"ab\x00"])
    query = pa.array([b"ab", b"abcdefgh-long", b"abcdefgh-else", b"missing!", None, b"", b"0000abcd", b"ab\x00"])
    index = ValueIndex(vocabulary)
    expected = pc.fill_null(pc.index_in(query, value_set=vocabulary), ABSENT).to_numpy(zero_copy_only=False)
    assert index.positions(query).tolist() == expected.tolist() == [2, 3, ABSENT, ABSENT, ABSENT, 1, 0, 5]
    integers = ValueIndex(pa.array([10, -4, 2**40]))
    assert integers.positions(pa.array([2**40, None, 10, 11])).tolist() == [2, ABSENT, 0, ABSENT]


def test_without_a_writable_cache_folder_loops_compile_at_each_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core.caching import CacheImpl

    def add_one(x):
        return x + 1

    monkeypatch.setattr(CacheImpl, "_locator_classes", [])  # as if no folder could be written
    with pytest.raises(RuntimeError, match="no locator available"):
        njit("int64(int64)", cache=True)(add_one)
    assert jit(types.int64(types.int64))(add_one)(41) == 42
