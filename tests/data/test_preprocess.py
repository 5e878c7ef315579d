"""Categorical encoders (vocabulary limits, hashing) and the reservoir sample behind the time split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wukong.cli import main
from wukong.data.manifest import read_manifest
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.preprocess import FrequencyVocabulary, HashEncoder, RatioSplit, Reservoir
from wukong.data.rows import Layout, RowBlock
from wukong.data.sources import open_source
from wukong.data.sources.criteo import SPARSE
from wukong.io import open_storage

from .conftest import criteo_lines, write_criteo


def stored_single_ids(uri: str) -> dict[int, np.ndarray]:
    """Row id → the single-hot ids stored for it (layout order), over every split, read from the shards."""
    storage = open_storage(uri)
    manifest = read_manifest(storage)
    layout = Layout.of(manifest.schema)
    rows = {}
    for shards in manifest.splits.values():
        for shard in shards:
            data = storage.read_bytes(shard.path)
            for b in shard.blocks:
                block = RowBlock.from_ipc(data[b.offset : b.offset + b.length], layout)
                rows.update(zip(block.row_ids.tolist(), block.single))
    return rows


def test_vocabulary_min_count_and_max_size() -> None:
    def fitted(**limits) -> FrequencyVocabulary:
        vocab = FrequencyVocabulary(**limits)
        vocab.fit(pa.array(["a", "c", "b", "c", None]))
        vocab.fit(pa.array(["c", "a", "d", "e", "e"]))  # counts add up over chunks: c 3, a 2, e 2, b 1, d 1
        vocab.finish()
        return vocab

    vocab = fitted(min_count=2, max_size=3)
    assert vocab.values.to_pylist() == ["c", "a", "e"] and vocab.counts.tolist() == [3, 2, 2]
    assert vocab.cardinality == 4
    assert vocab.encode_flat(pa.array(["c", "a", "e", "b", "d", "unseen", None])).tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert fitted(min_count=2, max_size=2).values.to_pylist() == ["c", "a"]  # the tie a/e goes to the smaller
    assert fitted(min_count=3).values.to_pylist() == ["c"]
    assert fitted().values.to_pylist() == ["c", "a", "e", "b", "d"]


def test_vocabulary_counts_stay_exact_over_many_chunks() -> None:
    vocab = FrequencyVocabulary(min_count=5)
    values = [f"v{i % 7}" for i in range(40 * 13)]  # 40 chunks: partial counts are merged along the way
    for start in range(0, len(values), 13):
        vocab.fit(pa.array(values[start : start + 13]))
    vocab.finish()
    assert dict(zip(vocab.values.to_pylist(), vocab.counts.tolist())) == Counter(values)


def test_min_count_and_max_vocab_through_prepare(tmp_path: Path) -> None:
    lines = criteo_lines(3000, seed=5)
    out = tmp_path / "ds"
    args = ["data", "prepare", "--source", "criteo", "--input", str(write_criteo(tmp_path / "day", lines))]
    args += ["--output", str(out), "--quiet", "--seed", "9", "--min-count", "55", "--max-vocab", "15"]
    assert main(args) == 0
    manifest = read_manifest(open_storage(str(out)))
    vocabulary = pq.read_table(out / manifest.files["vocabulary"]).to_pylist()
    cardinality = {f.name: f.cardinality for f in manifest.schema.sparse}
    stored = stored_single_ids(str(out))
    column = {name: Layout.of(manifest.schema).single.index(name) for name in SPARSE}
    train = RatioSplit(0.8, 0.1, 0.1, seed=9).assign(np.arange(len(lines))) == 0
    fields = [line.split("\t") for line in lines]
    limits_bit = Counter()
    for i, name in enumerate(SPARSE):
        counts = Counter(f[14 + i] for f, t in zip(fields, train) if t)
        frequent = sorted(((v, c) for v, c in counts.items() if c >= 55), key=lambda vc: (-vc[1], vc[0]))
        limits_bit.update(min_count=len(frequent) < len(counts), max_vocab=len(frequent) > 15)
        expected = {v: (rank + 1, c) for rank, (v, c) in enumerate(frequent[:15])}
        assert {r["value"]: (r["id"], r["count"]) for r in vocabulary if r["feature"] == name} == expected, name
        assert cardinality[name] == len(expected) + 1
        for row, f in enumerate(fields):  # every split's rows use the training vocabulary; the rest is id 0
            assert stored[row][column[name]] == expected.get(f[14 + i], (0,))[0], (name, row)
    assert limits_bit["min_count"] and limits_bit["max_vocab"], "both limits should drop values somewhere"


def test_hash_ids_do_not_depend_on_the_chunk() -> None:
    encoder = HashEncoder(size=50)
    for values in (["x", None, "y", "", "z", None, "x"], [7, None, 0, 123_456_789, None, 7]):
        whole = encoder.encode_flat(pa.array(values)).tolist()
        one_by_one = [encoder.encode_flat(pa.array([v], pa.array(values).type)).tolist()[0] for v in values]
        backwards = encoder.encode_flat(pa.array(values[::-1])).tolist()[::-1]
        assert whole == one_by_one == backwards, values
        assert all(0 <= i < 50 for i in whole)
    assert encoder.cardinality == 50


def test_hash_ids_spread_evenly_and_depend_on_the_salt() -> None:
    for values in (pa.array([f"value-{i}" for i in range(64_000)]), pa.array(np.arange(64_000))):
        counts = np.bincount(HashEncoder(64).encode_flat(values), minlength=64)
        chi_square = float(((counts - 1000) ** 2 / 1000).sum())  # 63 degrees of freedom: ~63 ± 11
        assert chi_square < 120, chi_square
    numbers = pa.array(np.arange(10_000))
    same = HashEncoder(64, salt=0).encode_flat(numbers) == HashEncoder(64, salt=1).encode_flat(numbers)
    assert same.mean() < 0.05  # another salt is another hash (1/64 agree by chance)


def test_hash_encoding_through_prepare(tmp_path: Path) -> None:
    lines = criteo_lines(1500, seed=2)
    out = str(tmp_path / "ds")
    options = PrepareOptions(categorical="hash", hash_size=97)
    manifest = prepare(open_source("criteo", write_criteo(tmp_path / "day", lines)), out, options)
    assert {f.cardinality for f in manifest.schema.sparse} == {97}
    assert "vocabulary" not in manifest.files and manifest.preprocessing["categorical"] == {"mode": "hash", "size": 97}
    stored = stored_single_ids(out)
    assert sorted(stored) == list(range(len(lines)))
    layout = Layout.of(manifest.schema)
    for i, name in enumerate(SPARSE):
        raw = pa.array([line.split("\t")[14 + i].encode() for line in lines], pa.binary())
        expected = HashEncoder(97).encode_flat(raw)
        assert [stored[row][layout.single.index(name)] for row in range(len(lines))] == expected.tolist(), name


@pytest.mark.parametrize("chunks", [[300], [150, 150], [60, 90, 150], [100, 200], [30] * 10])
def test_reservoir_above_its_size_is_a_uniform_sample(chunks: list[int]) -> None:
    size, total, runs = 100, sum(chunks), 300
    included = np.zeros(total)
    for seed in range(runs):
        reservoir = Reservoir(size, np.random.default_rng(seed))
        start = 0
        for count in chunks:
            reservoir.add(np.arange(start, start + count, dtype=np.float64))
            start += count
        assert reservoir.seen == total and len(reservoir.sample) == size
        assert len(np.unique(reservoir.sample)) == size, "a value was sampled twice"
        included[reservoir.sample.astype(int)] += 1
    # Each value is kept with probability size / total = 1/3: the oldest, middle and newest thirds alike.
    thirds = (included / runs).reshape(3, -1).mean(axis=1)
    assert np.allclose(thirds, size / total, atol=0.03), thirds


def test_reservoir_below_its_size_keeps_every_value_in_order() -> None:
    reservoir = Reservoir(100, np.random.default_rng(0))
    for start in (0, 30, 60):
        reservoir.add(np.arange(start, start + 30, dtype=np.float64))
    assert reservoir.seen == 90 and reservoir.sample.tolist() == list(range(90))


def test_time_split_cut_offs_from_a_sample_of_the_times(
    generated_movielens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("wukong.data.prepare.TIME_SAMPLE", 1_000)  # far fewer than the ~60 000 ratings
    manifest = prepare(
        open_source("movielens", generated_movielens), str(tmp_path / "ds"), PrepareOptions(split_by="time")
    )
    rows = manifest.source["rows_read"] - manifest.source["rows_rejected"]
    shares = [manifest.rows(split) / rows for split in ("train", "valid", "test")]
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.05), shares
