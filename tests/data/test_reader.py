"""The reader: equal batches on every rank, exact coverage, shuffling, resume, integrity checks."""

from __future__ import annotations

import collections
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import webdataset as wds

from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.rows import Layout, RowBlock
from wukong.data.sources.synthetic import SyntheticSource
from wukong.io import open_storage

ROWS = 2_345


@pytest.fixture(scope="module")
def uneven(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A dataset whose training split has uneven shards (700, 700, 700, rest) and uneven blocks."""
    out = str(tmp_path_factory.mktemp("uneven") / "ds")
    prepare(SyntheticSource(rows=ROWS, seed=7, cardinality=50), out, PrepareOptions(shard_rows=700, block_rows=300))
    return out


def all_row_ids(uri: str, split: str) -> list[int]:
    """Row ids straight from the shards (not through the reader)."""
    manifest = read_manifest(open_storage(uri))
    layout = Layout.of(manifest.schema)
    ids = []
    for shard in manifest.splits[split]:
        data = open_storage(uri).read_bytes(shard.path)
        for block in shard.blocks:
            ids += RowBlock.from_ipc(data[block.offset : block.offset + block.length], layout).row_ids.tolist()
    return ids


def test_fixture_really_is_uneven(uneven: str) -> None:
    rows = [s.rows for s in read_manifest(open_storage(uneven)).splits["train"]]
    assert len(set(rows)) > 1 and len(rows) < 4 * 2  # fewer shards than 4 ranks x 2 workers


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_every_rank_gets_the_same_number_of_batches(uneven: str, world_size: int, drop_last: bool) -> None:
    counts, ids = [], []
    for rank in range(world_size):
        reader = DatasetReader(uneven, "train", 64, rank=rank, world_size=world_size, drop_last=drop_last, seed=3)
        batches = list(reader)
        counts.append((len(reader), len(batches)))
        ids += [i for b in batches for i in b.row_ids.tolist()]
        assert all(len(b) <= 64 for b in batches)
        if drop_last:
            assert all(len(b) == 64 for b in batches)
    assert len(set(counts)) == 1 and counts[0][0] == counts[0][1] > 0
    assert len(ids) == len(set(ids)), "a row was read twice in one epoch"
    if not drop_last:  # exact coverage: the multiset of ids read equals the split
        assert collections.Counter(ids) == collections.Counter(all_row_ids(uneven, "train"))
    else:
        assert set(ids) <= set(all_row_ids(uneven, "train"))


def test_workers_cover_the_split_exactly(uneven: str) -> None:
    per_rank = []
    ids = []
    for rank in range(2):
        reader = DatasetReader(uneven, "train", 50, rank=rank, world_size=2, num_workers=2, drop_last=False)
        batches = list(reader)
        per_rank.append(len(batches))
        ids += [i for b in batches for i in b.row_ids.tolist()]
        assert len(batches) == len(reader)
    assert per_rank[0] == per_rank[1]
    assert collections.Counter(ids) == collections.Counter(all_row_ids(uneven, "train"))


def test_batches_hold_the_stored_rows(uneven: str) -> None:
    manifest = read_manifest(open_storage(uneven))
    layout = Layout.of(manifest.schema)
    stored = {}
    for shard in manifest.splits["valid"]:
        data = open_storage(uneven).read_bytes(shard.path)
        for block in shard.blocks:
            rows = RowBlock.from_ipc(data[block.offset : block.offset + block.length], layout)
            for i, row_id in enumerate(rows.row_ids):
                stored[int(row_id)] = (rows.labels[i], rows.dense[i], rows.single[i])
    for batch in DatasetReader(uneven, "valid", 32, drop_last=False, seed=1):
        per_key = batch.sparse.to_dict()
        assert list(per_key) == list(layout.single)
        for i, row_id in enumerate(batch.row_ids.tolist()):
            label, dense, single = stored[row_id]
            assert batch.labels[i].item() == label
            assert torch.equal(batch.dense[i], torch.tensor(dense))
            assert [per_key[k].values()[i].item() for k in layout.single] == single.tolist()


def test_shuffling_is_seeded_and_changes_each_epoch(uneven: str) -> None:
    def order(seed: int, epoch: int) -> list[int]:
        reader = DatasetReader(uneven, "train", 100, seed=seed, shuffle_buffer_rows=500)
        reader.set_epoch(epoch)
        return [i for b in reader for i in b.row_ids.tolist()]

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    unshuffled = [i for b in DatasetReader(uneven, "train", 100, shuffle=False) for i in b.row_ids.tolist()]
    assert unshuffled == sorted(unshuffled)


def ids_of(batches) -> list[list[int]]:
    return [b.row_ids.tolist() for b in batches]


def first_batches(reader: DatasetReader, count: int) -> list[list[int]]:
    seen = []
    for batch in reader:
        if len(seen) == count:
            break
        seen.append(batch.row_ids.tolist())
    return seen


@pytest.mark.parametrize("workers", [0, 2, 3])
@pytest.mark.parametrize("skip", [7, 8])
def test_resume_mid_epoch_returns_exactly_the_remaining_batches(uneven: str, workers: int, skip: int) -> None:
    """Bit-exact: the same batches in the same order as an uninterrupted epoch, with DataLoader
    workers too (their round-robin hand-back must not reorder batches after an odd skip)."""
    options = dict(seed=5, num_workers=workers, shuffle_buffer_rows=300)
    expected = ids_of(DatasetReader(uneven, "train", 40, **options))
    first = DatasetReader(uneven, "train", 40, **options)
    seen = first_batches(first, skip + 2)[:skip]  # a pipeline fetches ahead of what it trained on
    state = first.state_dict(batches=skip)
    assert state["epoch"] == 0 and state["seed"] == 5 and state["split"] == "train"
    assert [leg["batches"] for leg in state["legs"]] == [skip]
    assert state["legs"][0]["workers"] == max(1, workers), "the position records what the shuffle depends on"
    resumed = DatasetReader(uneven, "train", 40, **options)
    resumed.load_state_dict(state)
    assert resumed.batches_left() == len(expected) - skip
    rest = ids_of(resumed)
    assert seen + rest == expected
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["legs"] == []


def test_an_iterator_of_an_earlier_position_goes_stale(uneven: str) -> None:
    """A pipeline may hold the last epoch's iterator when the loop moves the reader on: that iterator
    must neither return batches nor count them."""
    reader = DatasetReader(uneven, "train", 40, seed=5)
    old = iter(reader)
    next(old)
    reader.set_epoch(1)
    assert list(old) == [] and reader.position == 0
    fresh = DatasetReader(uneven, "train", 40, seed=5)
    fresh.set_epoch(1)
    assert ids_of(reader) == ids_of(fresh) and reader.position == len(reader) and reader.batches_left() == len(reader)


def read_ranks(uri: str, world: int, workers: int, state: dict | None, steps: int | None) -> tuple[list, dict]:
    """Every rank's batches (the first ``steps``, or all) of a job of ``world`` ranks, and the position
    after them (the same on every rank)."""
    per_rank, states = [], []
    for rank in range(world):
        reader = DatasetReader(
            uri, "train", GLOBAL_BATCH // world, rank=rank, world_size=world, num_workers=workers,
            seed=2, shuffle_buffer_rows=200,
        )  # fmt: skip
        if state is not None:
            reader.load_state_dict(state)
        batches = first_batches(reader, steps) if steps is not None else ids_of(reader)
        per_rank.append(batches)
        states.append(reader.state_dict(batches=reader.position if steps is None else steps))
    assert all(s == states[0] for s in states), "ranks disagree on the data position"
    return per_rank, states[0]


GLOBAL_BATCH = 60


@pytest.mark.parametrize(("before", "after"), [((2, 0), (1, 0)), ((1, 0), (2, 2)), ((2, 2), (3, 0)), ((3, 0), (2, 0))])
def test_an_epoch_resumed_under_another_world_size_reads_every_row_once(uneven: str, before, after) -> None:
    total = len(all_row_ids(uneven, "train"))
    steps = 11
    first, state = read_ranks(uneven, *before, None, steps)
    assert sum(leg["batches"] for leg in state["legs"]) == steps
    rest, end = read_ranks(uneven, *after, state, None)
    assert len({len(batches) for batches in rest}) == 1, "every rank gets the same number of batches"
    assert steps + len(rest[0]) == total // GLOBAL_BATCH, "the epoch keeps its number of steps"
    ids = [i for batches in first + rest for batch in batches for i in batch]
    assert len(ids) == len(set(ids)), "a row was read twice in one epoch"
    assert set(ids) <= set(all_row_ids(uneven, "train")) and total - len(ids) < GLOBAL_BATCH
    assert end["epoch"] == 0 and sum(leg["batches"] for leg in end["legs"]) == total // GLOBAL_BATCH


def test_a_position_from_another_dataset_is_refused(uneven: str, tmp_path: Path) -> None:
    other = str(tmp_path / "other")
    prepare(SyntheticSource(rows=ROWS, seed=7, cardinality=50), other, PrepareOptions(shard_rows=700, block_rows=300))
    reader = DatasetReader(uneven, "train", 40)
    first_batches(reader, 3)
    with pytest.raises(DataError, match=r"saved data position is for the dataset prepared by run .* resume with the"):
        DatasetReader(other, "train", 40).load_state_dict(reader.state_dict())
    with pytest.raises(DataError, match="seed 0, this reader reads split train with seed 9: resume with the seed"):
        DatasetReader(uneven, "train", 40, seed=9).load_state_dict(reader.state_dict())


def test_corrupt_shard_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    manifest = prepare(SyntheticSource(rows=1_000), str(out), PrepareOptions())
    shard = out / manifest.splits["train"][0].path
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train-.*\.tar: sha256 mismatch .* corrupt or was modified; re-run prepare"):
        list(DatasetReader(str(out), "train", 100))


def test_prefix_without_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "train-x-000000.tar").write_bytes(b"partial")
    with pytest.raises(DataError, match=r"no manifest.json, so this is not a dataset"):
        DatasetReader(str(tmp_path), "train")


def test_unknown_split_and_too_small_splits(uneven: str) -> None:
    with pytest.raises(DataError, match="no rows in split 'holdout'; the dataset has: train, valid, test"):
        DatasetReader(uneven, "holdout")
    with pytest.raises(DataError, match="cannot give each of 4 ranks one full batch of 10000"):
        DatasetReader(uneven, "train", 10_000, rank=0, world_size=4)


def test_shards_are_plain_webdataset(uneven: str) -> None:
    manifest = read_manifest(open_storage(uneven))
    layout = Layout.of(manifest.schema)
    path = str(Path(uneven) / manifest.splits["train"][0].path)
    samples = list(wds.WebDataset(path, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:06d}" for i in range(len(samples))]
    rows = sum(len(RowBlock.from_ipc(s["arrow"], layout)) for s in samples)
    assert rows == manifest.splits["train"][0].rows


def test_multi_hot_features_become_jagged(tmp_path: Path) -> None:
    folder = tmp_path / "pq"
    folder.mkdir()
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {"y": [1, 0, 1, 0] * 50, "tags": [["a", "b"], [], ["c"], ["a", "c", "d"]] * 50, "u": list("wxyz") * 50}
        ),
        folder / "p.parquet",
    )
    (tmp_path / "spec.yaml").write_text("label: y\nsparse: [u, {name: tags, multi_hot: true}]\n")
    from wukong.data.sources import open_source

    out = str(tmp_path / "ds")
    prepare(open_source("parquet", folder, spec=tmp_path / "spec.yaml"), out, PrepareOptions(split=(1.0, 0.0, 0.0)))
    batch = next(iter(DatasetReader(out, "train", 200, shuffle=False)))
    lengths = batch.sparse["tags"].lengths().tolist()
    assert lengths == [2, 0, 1, 3] * 50
    assert batch.sparse["u"].lengths().tolist() == [1] * 200
    assert batch.dense.shape == (200, 0)


def test_rows_survive_the_block_format() -> None:
    layout = Layout(2, ("a",), ("m",))
    from wukong.data.rows import Jagged

    block = RowBlock(
        np.arange(3),
        np.array([0, 1, 0], np.float32),
        np.ones((3, 2), np.float32),
        np.array([[4], [5], [6]], np.int32),
        {"m": Jagged(np.array([0, 2, 2, 3]), np.array([7, 8, 9], np.int32))},
    )
    again = RowBlock.from_ipc(io.BytesIO(block.to_ipc()).getvalue(), layout)
    assert again.single.tolist() == [[4], [5], [6]] and again.multi["m"].lengths.tolist() == [2, 0, 1]
    taken = again.take(np.array([2, 0]))
    assert taken.multi["m"].values.tolist() == [9, 7, 8] and taken.row_ids.tolist() == [2, 0]
