"""``prepare`` end to end: published datasets, rejects, all-or-nothing publication, overwrite, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from wukong.cli import main
from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.sources import open_source
from wukong.data.sources.synthetic import SyntheticSource
from wukong.io import open_storage

from .conftest import criteo_lines, write_criteo


def keys(uri: str) -> list[str]:
    return [o.key for o in open_storage(uri).list()]


@pytest.mark.slow
def test_synthetic_to_s3_and_back(bucket: str) -> None:
    uri = f"s3://{bucket}/synthetic"
    manifest = prepare(SyntheticSource(rows=30_000, seed=1), uri, PrepareOptions(shard_rows=7_000, block_rows=2_000))
    assert sum(manifest.rows(s) for s in ("train", "valid", "test")) == 30_000
    assert 0.75 < manifest.rows("train") / 30_000 < 0.85
    assert len(manifest.splits["train"]) == -(-manifest.rows("train") // 7_000)
    assert all(len(b) <= 2 for s in manifest.splits["train"] for b in [[x for x in s.blocks if x.rows > 2_000]])
    stored = set(keys(uri))
    assert stored == manifest.keys()
    reread = read_manifest(open_storage(uri))
    assert reread.to_json() == manifest.to_json()
    reader = DatasetReader(uri, "valid", batch_size=500, drop_last=False, shuffle=False)
    assert sum(len(b) for b in reader) == manifest.rows("valid")


def test_movielens_dataset(movielens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ml"
    assert (
        main(["data", "prepare", "--source", "movielens", "--input", str(movielens), "--output", str(out), "--quiet"])
        == 0
    )
    manifest = read_manifest(open_storage(str(out)))
    assert manifest.source["rows_read"] == len((movielens / "ratings.csv").read_text().splitlines()) - 1
    names = {f.name: f for f in manifest.schema.sparse}
    assert names["genres"].multi_hot and names["movie_tags"].multi_hot and not names["user_id"].multi_hot
    users = pc.count_distinct(pacsv.read_csv(movielens / "ratings.csv").column("userId")).as_py()
    assert names["user_id"].cardinality <= users + 1
    assert main(["data", "inspect", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "train" in summary and "genres" in summary and "multi-hot" in summary
    rejects = (out / manifest.files["rejects"]).read_text().splitlines() if "rejects" in manifest.files else []
    assert len(rejects) == manifest.source["rows_rejected"]


def test_time_split_puts_the_newest_rows_in_test(movielens: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "ml-time")
    manifest = prepare(open_source("movielens", movielens), out, PrepareOptions(split_by="time"))
    assert manifest.preprocessing["split"]["by"] == "time"
    assert 0.7 < manifest.rows("train") / manifest.source["rows_read"] < 0.9
    # Row ids index the source's valid rows in order (the one rejected rating is the file's last line).
    timestamps = pacsv.read_csv(movielens / "ratings.csv").column("timestamp").to_numpy()
    seen = {}
    for split in ("train", "valid", "test"):
        reader = DatasetReader(out, split, batch_size=4096, drop_last=False, shuffle=False)
        seen[split] = timestamps[np.concatenate([b.row_ids.numpy() for b in reader])]
        assert len(seen[split]) == manifest.rows(split)
    assert seen["train"].max() <= seen["valid"].min() <= seen["valid"].max() <= seen["test"].min()


def test_vocabulary_is_fitted_on_training_rows_only(tmp_path: Path) -> None:
    lines = criteo_lines(3000, seed=5)
    path = write_criteo(tmp_path / "day", lines)
    out = str(tmp_path / "ds")
    manifest = prepare(open_source("criteo", path), out, PrepareOptions(seed=9))
    vocab = pq.read_table(Path(out) / manifest.files["vocabulary"])
    # Recount cat_0 over the training rows by re-deriving each row's split from the manifest's rule.
    from wukong.data.preprocess import RatioSplit

    splits = RatioSplit(0.8, 0.1, 0.1, seed=9).assign(np.arange(3000))
    train_values = {line.split("\t")[14] for line, s in zip(lines, splits) if s == 0}
    vocab_values = {r["value"] for r in vocab.to_pylist() if r["feature"] == "cat_0"}
    assert vocab_values == train_values
    assert next(f for f in manifest.schema.sparse if f.name == "cat_0").cardinality == len(train_values) + 1


def test_too_many_rejects_publish_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = criteo_lines(100)
    fields = lines[3].split("\t")
    lines[3] = "\t".join([fields[0], "abc", *fields[2:]])
    lines[7] = "only\tthree\tfields"
    path = write_criteo(tmp_path / "day", lines)
    out = tmp_path / "ds"
    code = main(["data", "prepare", "--source", "criteo", "--input", str(path), "--output", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "2 of 100 rows rejected (2.00% > --max-reject-ratio 0.001)" in err
    assert "non-numeric dense value: 1" in err and "wrong field count (3, expected 40): 1" in err
    assert "nothing was published" in err
    assert not out.exists() or keys(str(out)) == []
    # With a tolerance above the share, the same input is published with its rejects file.
    assert (
        main(
            [
                "data",
                "prepare",
                "--source",
                "criteo",
                "--input",
                str(path),
                "--output",
                str(out),
                "--quiet",
                "--max-reject-ratio",
                "0.05",
            ]
        )
        == 0
    )
    manifest = read_manifest(open_storage(str(out)))
    assert manifest.source["rejects"] == {"non-numeric dense value": 1, "wrong field count (3, expected 40)": 1}
    rejected = [json.loads(line) for line in (out / manifest.files["rejects"]).read_text().splitlines()]
    assert {r["reason"] for r in rejected} == set(manifest.source["rejects"])


@pytest.mark.parametrize("case", ["missing", "empty", "bad-gzip"])
def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "input"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "bad-gzip":
        path.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00not deflate" * 10)
    code = main(
        ["data", "prepare", "--source", "criteo", "--input", str(path), "--output", str(tmp_path / "o"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(path) in err
    expected = {"missing": "input does not exist", "empty": "holds no rows", "bad-gzip": "not a readable gzip file"}
    assert expected[case] in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_existing_dataset_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = str(tmp_path / "ds")
    first = prepare(SyntheticSource(rows=5_000, seed=1), out, PrepareOptions(shard_rows=2_000))
    before = {k: open_storage(out).read_bytes(k) for k in keys(out)}
    with pytest.raises(DataError, match=r"already holds a dataset .* pass --overwrite"):
        prepare(SyntheticSource(rows=6_000, seed=2), out, PrepareOptions())
    assert {k: open_storage(out).read_bytes(k) for k in keys(out)} == before
    second = prepare(SyntheticSource(rows=6_000, seed=2), out, PrepareOptions(overwrite=True))
    assert second.run_id != first.run_id
    assert set(keys(out)) == second.keys()  # the old run's shards are gone, the new ones all there
    assert sum(second.rows(s) for s in second.splits) == 6_000


def test_failed_overwrite_keeps_the_old_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "ds")
    first = prepare(SyntheticSource(rows=5_000, seed=1), out, PrepareOptions(shard_rows=1_000))

    class Crash(Exception):
        pass

    def crash(self, split, rows):
        raise Crash

    monkeypatch.setattr("wukong.data.shards.ShardWriter.add", crash)
    with pytest.raises(Crash):
        prepare(SyntheticSource(rows=6_000, seed=2), out, PrepareOptions(overwrite=True))
    assert read_manifest(open_storage(out)).run_id == first.run_id
    assert set(keys(out)) == first.keys()


@pytest.mark.slow
def test_interrupted_run_leaves_no_dataset_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    # A million rows: every row is scanned and counted before the first shard is published, and the other
    # 49 shards take over a second more to write, the window in which the run is killed.
    command = [
        sys.executable,
        "-m",
        "wukong",
        "data",
        "prepare",
        "--source",
        "synthetic",
        "--rows",
        "1000000",
        "--shard-rows",
        "20000",
        "--output",
        str(out),
        "--quiet",
    ]
    process = subprocess.Popen(command)
    deadline = time.time() + 120
    while not list(out.glob("shards/*.tar")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list((out / "shards").glob("*.tar")), "the run should have been killed after publishing a shard"
    assert not (out / "manifest.json").exists()
    with pytest.raises(DataError, match=r"no manifest.json, so this is not a dataset"):
        DatasetReader(str(out), "train")
    manifest = prepare(SyntheticSource(rows=4_000), str(out), PrepareOptions())
    assert set(keys(str(out))) == manifest.keys()  # the orphans of the killed run are gone
