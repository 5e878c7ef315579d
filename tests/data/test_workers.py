"""Ingest in parts: byte ranges tile a file, the fast and checked Criteo paths agree, and N workers
give the dataset one gives (same rows, ids and splits; only the shard boundaries differ); the
worker pool runs inputs in this process until its workers are up."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.rows import Layout, RowBlock
from wukong.data.sources.criteo import CriteoSource
from wukong.data.sources.text import line_ranges, read_lines
from wukong.data.stages import Workers
from wukong.io import open_storage

from .conftest import criteo_lines, write_criteo


def split_rows(uri: str) -> dict[str, list[tuple]]:
    """Per split, every stored row as (row id, label, dense, ids), sorted: the dataset up to shard boundaries."""
    storage = open_storage(uri)
    manifest = read_manifest(storage)
    layout = Layout.of(manifest.schema)
    rows: dict[str, list[tuple]] = {}
    for split, shards in manifest.splits.items():
        found = rows.setdefault(split, [])
        for shard in shards:
            data = storage.read_bytes(shard.path)
            for b in shard.blocks:
                block = RowBlock.from_ipc(data[b.offset : b.offset + b.length], layout)
                for i in range(len(block)):
                    found.append((int(block.row_ids[i]), float(block.labels[i]), *block.dense[i], *block.single[i]))
        found.sort()
    return rows


def messy_lines(count: int, seed: int) -> list[str]:
    """Criteo lines with some malformed rows (rejected) and some unusual but valid ones."""
    lines = criteo_lines(count, seed)
    for i in range(5, count, 97):
        fields = lines[i].split("\t")
        kind = i % 5
        if kind == 0:
            fields[2] = "7x"  # non-numeric dense value
        elif kind == 1:
            fields[16] = "AbCdEf01"  # valid: upper-case hex
        elif kind == 2:
            fields = fields[:9]  # wrong field count
        elif kind == 3:
            fields[3] = "-0"  # valid
        else:
            fields[20] = "12-45678"  # bad categorical value
        lines[i] = "\t".join(fields)
    return lines


@pytest.mark.parametrize("part_bytes", [1, 700, 4096, 1 << 30])
def test_byte_ranges_tile_the_file(tmp_path: Path, part_bytes: int) -> None:
    path = write_criteo(tmp_path / "day", criteo_lines(300, seed=1))
    data = path.read_bytes()
    ranges = line_ranges(path, part_bytes)
    assert len(ranges) == (1 if part_bytes >= len(data) else -(-len(data) // part_bytes))
    pieces = [b"".join(read_lines(path, start, stop, block_bytes=1000)) for start, stop in ranges]
    assert b"".join(pieces) == data
    assert all(p.endswith(b"\n") for p in pieces if p)  # whole lines only
    gz = tmp_path / "day.gz"
    gz.write_bytes(gzip.compress(data))
    assert line_ranges(gz, part_bytes) == [(0, -1)]  # gzip cannot be entered mid-way


def test_fast_and_checked_paths_accept_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = messy_lines(2000, seed=2)
    good = [line for i, line in enumerate(lines) if i % 97 != 5 or i % 5 in (1, 3)]
    for name, body in {"messy": lines, "clean": good}.items():
        path = write_criteo(tmp_path / name, body)

        def read(source: CriteoSource) -> tuple[pa.Table, list]:
            """The rows (categories decoded: the fast path gives them dictionary-encoded) and the rejects."""
            chunks = list(source.chunks())
            tables = [c.table.cast(pa.schema([(f.name, _decoded(f.type)) for f in c.table.schema])) for c in chunks]
            return pa.concat_tables(tables), [r for c in chunks for r in c.rejects]

        fast_table, fast_rejects = read(CriteoSource(path))
        with monkeypatch.context() as patch:
            patch.setattr("wukong.data.sources.criteo._fast", lambda block, skipped: None)
            checked_table, checked_rejects = read(CriteoSource(path))
        assert fast_table.equals(checked_table) and fast_rejects == checked_rejects
        assert fast_table.num_rows == len(good)
        assert len(checked_rejects) == len(body) - len(good)


def _decoded(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def write_inputs(folder: Path) -> Path:
    """Two plain files and one gzip file of Criteo rows with some rejects: several parts each."""
    folder.mkdir()
    write_criteo(folder / "day_0", messy_lines(2500, seed=3))
    write_criteo(folder / "day_1", criteo_lines(1500, seed=4))
    write_criteo(folder / "day_2.gz", messy_lines(1200, seed=5), compress=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("categorical", ["frequency", "hash"])
def test_three_workers_give_the_dataset_one_gives(tmp_path: Path, categorical: str) -> None:
    inputs = write_inputs(tmp_path / "days")
    options = PrepareOptions(categorical=categorical, hash_size=5000, max_reject_ratio=0.05, shard_rows=1000)
    one = prepare(CriteoSource(inputs), str(tmp_path / "one"), options)  # one part per file
    many_source = CriteoSource(inputs, part_bytes=150_000)
    assert len(many_source.parts()) >= 6
    many = prepare(many_source, str(tmp_path / "three"), options, workers=3)

    assert split_rows(str(tmp_path / "one")) == split_rows(str(tmp_path / "three"))
    assert one.schema == many.schema and one.source == many.source and one.source["rows_rejected"] > 0
    assert one.statistics["label_mean"] == pytest.approx(many.statistics["label_mean"], rel=1e-12)
    for name, stats in one.statistics["dense"].items():  # summed part by part: equal up to rounding
        assert stats == pytest.approx(many.statistics["dense"][name], rel=1e-12)
    read = lambda d, m, key: (tmp_path / d / m.files[key]).read_bytes()  # noqa: E731
    if categorical == "frequency":
        assert read("one", one, "vocabulary") == read("three", many, "vocabulary")
    # Within a block of lines, wrong field counts come first; blocks follow the parts, not the workers.
    assert sorted(read("one", one, "rejects").splitlines()) == sorted(read("three", many, "rejects").splitlines())
    tags = {Path(s.path).name.split("-")[-2] for shards in many.splits.values() for s in shards}
    assert tags == {"000", "001", "002"}  # each worker wrote its own shards
    assert set(
        p.relative_to(tmp_path / "three").as_posix() for p in (tmp_path / "three").rglob("*") if p.is_file()
    ) == (many.keys())


def test_a_failing_part_publishes_nothing(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "days")
    rows = "\n".join(criteo_lines(20_000, seed=6)).encode()
    (inputs / "day_3.gz").write_bytes(gzip.compress(rows)[:-5000])  # truncated: fails when read, not when opened
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"day_3\.gz: read failed"):
        prepare(CriteoSource(inputs, part_bytes=150_000), str(out), PrepareOptions(max_reject_ratio=0.05), workers=2)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_row_ids_follow_the_source_order_across_parts(tmp_path: Path) -> None:
    lines = criteo_lines(3000, seed=7)
    path = write_criteo(tmp_path / "day", lines)
    source = CriteoSource(path, part_bytes=20_000)
    assert len(source.parts()) > 10
    prepare(source, str(tmp_path / "ds"), PrepareOptions(split=(1.0, 0.0, 0.0)))
    rows = split_rows(str(tmp_path / "ds"))["train"]
    labels = np.array([int(line.split("\t")[0]) for line in lines], dtype=np.float32)
    assert [r[0] for r in rows] == list(range(3000))
    assert np.array_equal([r[1] for r in rows], labels)


@pytest.mark.slow
def test_parquet_files_are_parts_and_the_time_split_holds_across_workers(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from wukong.data.sources.parquet import ParquetSource

    folder = tmp_path / "events"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        n = 3000
        table = pa.table(
            {
                "y": rng.integers(0, 2, n),
                "price": rng.random(n) * 10,
                "user": rng.integers(0, 400, n),
                "at": rng.integers(0, 10**6, n),
            }
        )
        pq.write_table(table, folder / f"part-{k}.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text("label: y\ndense: [price]\nsparse: [user]\ntime: at\n")
    source = ParquetSource(folder, spec)
    assert [p.path for p in source.parts()] == [str(f) for f in sorted(folder.glob("*.parquet"))]
    options = PrepareOptions(split_by="time", shard_rows=2000)
    one = prepare(source, str(tmp_path / "one"), options)
    two = prepare(ParquetSource(folder, spec), str(tmp_path / "two"), options, workers=2)
    assert one.preprocessing["split"] == two.preprocessing["split"]  # the same cut-offs
    assert split_rows(str(tmp_path / "one")) == split_rows(str(tmp_path / "two"))


def where_it_ran(value: int, progress=None) -> tuple[int, int]:
    if value < 0:
        raise ValueError(f"input {value}")
    return value, os.getpid()


def test_inputs_run_here_until_the_workers_are_up_then_in_them(monkeypatch: pytest.MonkeyPatch) -> None:
    with Workers(2) as pool:
        assert pool.ready.wait(120)
        late = pool.map(where_it_ran, [(i,) for i in range(8)])
    assert [v for v, _ in late] == list(range(8))  # in input order
    assert not any(pid == os.getpid() for _, pid in late)
    monkeypatch.setattr(Workers, "_start", lambda self, pool: None)  # a pool that never comes up
    with Workers(2) as pool:
        early = pool.map(where_it_ran, [(i,) for i in range(8)])
        undone = []
        with pytest.raises(ValueError, match="input -1"):  # a failure here: later inputs do not start
            pool.map(where_it_ran, [(0,), (1,), (-1,), (3,)], undo=undone.append)
        pool.ready.set()  # lets the pool shut down
    assert early == [(i, os.getpid()) for i in range(8)]
    assert undone == [(0, os.getpid()), (1, os.getpid())]


def test_a_pool_that_cannot_start_undoes_what_ran_here(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures.process import BrokenProcessPool

    def broken(self, *args, **kwargs):
        raise BrokenProcessPool("the server died")

    undone = []
    with Workers(2) as pool:
        assert pool.ready.wait(120)
        pool.ready.clear()

        def up_after_this(value: int, progress=None) -> int:
            pool.ready.set()  # the pool "comes up" once this input has run here
            return value

        monkeypatch.setattr(type(pool.pool), "submit", broken)
        with pytest.raises(BrokenProcessPool, match="the server died"):
            pool.map(up_after_this, [(1,), (2,)], undo=undone.append)
        monkeypatch.undo()
    assert undone == [1]  # what ran here is undone, not left published


def test_a_failing_input_in_a_worker_undoes_the_others_results() -> None:
    undone = []
    with Workers(2) as pool:
        assert pool.ready.wait(120)
        with pytest.raises(ValueError, match="input -1"):
            pool.map(where_it_ran, [(0,), (-1,), (2,)], undo=undone.append)
    assert sorted(v for v, _ in undone) == [0, 2]  # the others finished, and were undone
