"""The fanned-out ingest: its steps called directly (publication only at commit, cleanup of a failed
run), the compiled YAML, and the whole pipeline under kfp.local against ``wukong data prepare``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.wukong_ingest_pipeline import COMPILED, PARALLELISM, compile_pipeline, run_locally
from tests.data.conftest import criteo_lines, write_criteo
from tests.data.test_workers import messy_lines, split_rows
from wukong.cli import main
from wukong.data.errors import DataError
from wukong.data.manifest import MANIFEST, read_manifest
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.sources.criteo import CriteoSource
from wukong.io import open_storage
from wukong.pipeline import fanout


def criteo_days(folder: Path) -> Path:
    """Three day files (one gzip), some rows malformed: three parts."""
    folder.mkdir()
    write_criteo(folder / "day_0", messy_lines(2500, seed=11))
    write_criteo(folder / "day_1", criteo_lines(1800, seed=12))
    write_criteo(folder / "day_2.gz", criteo_lines(1500, seed=13), compress=True)
    return folder


def stored(uri: str) -> set[str]:
    return {o.key for o in open_storage(uri).list()}


def run_steps(specs: list[str], until: str = "") -> dict | None:
    """The pipeline's steps in its order, stopping before ``until`` (as a failed task stops a run)."""
    for name, step in (
        ("scan", lambda: [fanout.scan_group(s) for s in specs]),
        ("offsets", lambda: fanout.check_offsets(specs)),
        ("count", lambda: [fanout.count_group(s) for s in specs]),
        ("vocabulary", lambda: fanout.vocabulary(specs)),
        ("encode", lambda: [fanout.encode_group(s) for s in specs]),
        ("commit", lambda: fanout.commit_run(specs)),
    ):
        if name == until:
            return None
        result = step()
    return result


def test_steps_publish_only_at_commit_and_a_failed_run_is_cleaned_up(tmp_path: Path) -> None:
    days, out = criteo_days(tmp_path / "days"), str(tmp_path / "ds")
    specs = fanout.plan("criteo", str(days), out, tasks=2, max_reject_ratio=0.05)
    assert len(specs) == 2
    run_steps(specs, until="commit")  # every shard written, then the run dies
    assert any(k.startswith("shards/") for k in stored(out)) and MANIFEST not in stored(out)
    with pytest.raises(DataError, match=r"no manifest\.json"):
        read_manifest(open_storage(out))

    summary = run_steps(fanout.plan("criteo", str(days), out, tasks=2, shard_rows=1000, max_reject_ratio=0.05))
    manifest = read_manifest(open_storage(out))
    assert stored(out) == manifest.keys()  # the dead run's shards and both runs' staging are gone
    assert summary["rows"] == {s: manifest.rows(s) for s in manifest.splits}
    assert summary["rows_rejected"] == manifest.source["rows_rejected"] > 0
    prepare(CriteoSource(days), str(tmp_path / "local"), PrepareOptions(max_reject_ratio=0.05))
    assert split_rows(out) == split_rows(str(tmp_path / "local"))


def test_too_many_rejects_fail_before_counting_and_publish_nothing(tmp_path: Path) -> None:
    days = tmp_path / "days"
    days.mkdir()
    write_criteo(days / "day_0", ["1\tnot\ta\trow"] * 50 + criteo_lines(200, seed=1))
    out = str(tmp_path / "ds")
    specs = fanout.plan("criteo", str(days), out, tasks=3)
    with pytest.raises(DataError, match=r"50 of 250 rows rejected .* nothing was published"):
        run_steps(specs, until="count")
    assert not any(k.startswith("shards/") for k in stored(out)) and MANIFEST not in stored(out)


def test_a_time_split_is_refused_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """By the plan, before anything is written; by `wukong pipeline run` before any step starts."""
    days, out = criteo_days(tmp_path / "days"), tmp_path / "ds"
    with pytest.raises(DataError, match=r"^split_by time: a fanned-out ingest \(ingest_tasks >= 1\) splits by ratio"):
        fanout.plan("criteo", str(days), str(out), tasks=2, split_by="time")
    assert not out.exists()
    workdir = tmp_path / "run"
    argv = ["pipeline", "run", "--local", "--workdir", str(workdir), "--ingest-tasks", "2", "--split-by", "time"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("wukong pipeline run: split_by time: a fanned-out ingest")
    assert not workdir.exists()


def test_compiled_ingest_pipeline_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "fresh.yaml").read_text()
    assert fresh == COMPILED.read_text(), "pipelines/wukong_ingest_pipeline.yaml is stale: run `make pipeline`"
    spec, platform = list(yaml.safe_load_all(fresh))
    tasks = spec["root"]["dag"]["tasks"]
    loops = {task["taskInfo"]["name"]: task for name, task in tasks.items() if name.startswith("for-loop")}
    assert set(loops) == {"scan-parts", "count-parts", "encode-parts"}
    assert all(loop["iteratorPolicy"]["parallelismLimit"] == PARALLELISM for loop in loops.values())
    # Each gathering step waits for every task of the loop before it (dsl.Collected).
    producers = {
        name: task["inputs"]["parameters"]["groups"]["taskOutputParameter"]["producerTask"]
        for name, task in tasks.items()
        if name.startswith(("ingest-gather", "ingest-commit"))
    }
    assert sorted(producers.values()) == sorted(n for n in tasks if n.startswith("for-loop"))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(e["secretAsEnv"][0]["secretName"] == "wukong-s3-credentials" for e in executors.values())


@pytest.mark.slow
def test_fanned_out_ingest_under_kfp_local(tmp_path: Path) -> None:
    days = criteo_days(tmp_path / "days")
    (days / "day_0").write_text("\n".join(criteo_lines(2500, seed=11)) + "\n")  # no rejects: default tolerance
    train_rows = run_locally(tmp_path / "run", source="criteo", input_uri=str(days), tasks=3)
    out = str(tmp_path / "run" / "dataset")
    manifest = read_manifest(open_storage(out))
    assert train_rows == manifest.rows("train") and stored(out) == manifest.keys()
    assert {Path(s.path).name.split("-")[-2] for s in manifest.splits["train"]} == {"000", "001", "002"}
    prepare(CriteoSource(days), str(tmp_path / "local"), PrepareOptions())
    assert split_rows(out) == split_rows(str(tmp_path / "local"))
