"""``wukong sweep`` end to end on a tiny teacher dataset: killed mid-way, resumed, reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wukong.cli import main
from wukong.experiments.sweep import parse_targets

from .conftest import QUICK

SETS = [item for override in QUICK for item in ("--set", override)]


def sweep_args(data: str, output: Path, seeds: int = 1, mflops: str = "0.05:0.2", points: int = 2) -> list[str]:
    points = ["--models", "wukong", "--mflops", mflops, "--points", str(points), "--seeds", str(seeds)]
    return ["sweep", "--data", data, *points, "--config", "tiny", *SETS, "--output", str(output)]


def journal_lines(output: Path) -> list[dict]:
    path = output / "sweep.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def workers_of(output: Path) -> list[int]:
    """Live processes whose command line names a trial of this sweep."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(output).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_targets_are_log_spaced_or_listed() -> None:
    assert parse_targets("0.1:10", 3) == pytest.approx([0.1, 1.0, 10.0])
    assert parse_targets("1,0.3", 9) == [0.3, 1.0]
    with pytest.raises(ValueError, match="LOW:HIGH"):
        parse_targets("10:0.1", 3)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find orphaned workers")
def test_sweep_resumes_after_a_kill_and_reports(teacher_data: str, tmp_path: Path, capsys) -> None:
    output = tmp_path / "sweep"
    args = sweep_args(teacher_data, output, mflops="0.05:0.3", points=3)
    process = subprocess.Popen([sys.executable, "-m", "wukong", *args])
    ids = {"wukong-00-s0", "wukong-01-s0", "wukong-02-s0"}

    def started_after_one_finished() -> bool:
        finished = {r["id"] for r in journal_lines(output)}
        return bool(finished) and any((output / "trials" / i / "log.txt").is_file() for i in ids - finished)

    deadline = time.monotonic() + 500
    while not started_after_one_finished() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # the runner dies without any chance to clean up
    process.wait()
    first = journal_lines(output)
    assert len(first) == 1, "the kill came too late to test resuming"
    unfinished = ids - {r["id"] for r in first}
    assert any((output / "trials" / i).is_dir() for i in unfinished)  # a partial trial was left behind
    for _ in range(100):  # its worker dies with the runner (PR_SET_PDEATHSIG), leaving no orphan behind
        if not workers_of(output):
            break
        time.sleep(0.1)
    assert not workers_of(output)

    assert main(args) == 0
    assert "1 of 3 trials already finished" in capsys.readouterr().out
    records = journal_lines(output)
    assert len(records) == 3 and records[:1] == first  # the finished trial was not run again
    assert [r["status"] for r in records] == ["ok"] * 3
    by_point = sorted(records, key=lambda r: r["point"])
    mflops = [r["mflops_per_example"] for r in by_point]
    assert mflops == sorted(mflops) and mflops[-1] > 4 * mflops[0]
    for record in records:
        assert record["mflops_per_example"] == pytest.approx(record["target_mflops"], rel=0.05)
        assert record["examples_seen"] == 2304 == record["steps"] * 128  # one pass over the same rows
        assert record["training_flops"] == pytest.approx(3 * record["mflops_per_example"] * 1e6 * 2304)
        for split in ("valid", "test"):
            metrics = record[split]
            assert 0 < metrics["logloss"] < 1.5 and metrics["excess_logloss"] == pytest.approx(
                metrics["logloss"] - metrics["oracle_logloss"]
            )
        assert not (output / "trials" / record["id"] / "checkpoints").exists()
    for name in ("report.md", "report.html", "scaling-logloss.png", "scaling-excess.png", "scaling-compute.png"):
        assert (output / name).stat().st_size > 0
    laws = json.loads((output / "laws.json").read_text())  # 3 points: a law is fitted (or "no decrease")
    assert {(law["family"], law["view"]) for law in laws} >= {("wukong", "logloss"), ("wukong", "excess")}
    assert all(law["fit"] is not None and law["fit"]["points"] == 3 for law in laws)
    assert "| wukong" in (output / "report.md").read_text()

    # Another command on the same folder is refused, with one line, before anything runs (seeds alone
    # may be raised, to add seeds to a finished sweep).
    assert main(sweep_args(teacher_data, output, mflops="0.05:0.2", points=3)) == 2
    assert "holds an experiment with other targets_mflops" in capsys.readouterr().err
    # The report regenerates from the records alone.
    (output / "report.md").unlink()
    assert main(["sweep", "report", str(output)]) == 0 and (output / "report.md").is_file()


def test_plan_scales_each_family_with_one_data_budget_and_extra_seeds_at_the_ends(teacher_data: str) -> None:
    from wukong.config import load_config
    from wukong.data.manifest import read_manifest
    from wukong.experiments.sweep import Sweep
    from wukong.io import open_storage
    from wukong.model.scaling import mflops_per_example

    sweep = Sweep(teacher_data, ["dlrm"], [0.02, 0.04, 0.08], seeds=1, end_seeds=2, preset="tiny", overrides=QUICK)
    specs = sweep.plan()
    assert [s.id for s in specs] == ["dlrm-00-s0", "dlrm-01-s0", "dlrm-02-s0", "dlrm-00-s1", "dlrm-02-s1"]
    for spec in specs:
        assert spec.splits == ("valid", "test")
        assert {"train.epochs=1", "train.max_steps=18", "train.patience=0"} <= set(spec.overrides)
    schema = read_manifest(open_storage(teacher_data)).schema
    for spec in specs[:3]:  # the overrides carry the upscaled config
        cost = mflops_per_example("dlrm", schema, load_config("tiny", [*spec.overrides, "model.name=dlrm"]).model)
        assert cost == pytest.approx(spec.meta["target_mflops"], rel=0.05)


def test_a_grid_trains_every_point_at_every_combination(teacher_data: str) -> None:
    from wukong.config import ConfigError
    from wukong.experiments.sweep import Sweep, only_chosen, parse_grid

    grid = parse_grid(["train.learning_rate=0.001,0.004", "model.mlp_dropout=0.0,0.1"])
    sweep = Sweep(teacher_data, ["dlrm"], [0.02, 0.08], preset="tiny", overrides=QUICK, grid=grid)
    specs = sweep.plan()
    assert len(specs) == 2 * 4 and specs[0].id == "dlrm-00-s0-g00" and specs[-1].id == "dlrm-01-s0-g03"
    combos = {(s.meta["point"], tuple(sorted(s.meta["grid"].items()))) for s in specs}
    assert len(combos) == 8
    for spec in specs:  # the combination's values are applied, after the preset's own overrides
        assert f"train.learning_rate={spec.meta['grid']['train.learning_rate']}" in spec.overrides
        assert f"model.mlp_dropout={spec.meta['grid']['model.mlp_dropout']}" in spec.overrides
    assert sweep.settings()["grid"] == grid
    # Seeds after the first train only the combination their point's first seed chose.
    chosen = {("dlrm", 0): specs[2].meta["grid"], ("dlrm", 1): specs[5].meta["grid"]}
    two = Sweep(teacher_data, ["dlrm"], [0.02, 0.08], seeds=2, preset="tiny", overrides=QUICK, grid=grid)
    later = [s for s in only_chosen(two.plan(), chosen) if s.seed == 1]
    assert [s.id for s in later] == ["dlrm-00-s1-g02", "dlrm-01-s1-g01"]
    assert len([s for s in two.plan() if s.seed == 1]) == 8  # without a choice yet: the whole grid
    plain = Sweep(teacher_data, ["dlrm"], [0.02], preset="tiny").settings()
    assert plain["grid"] is None  # equal to a sweep.json of before grids, which has no such key
    for bad, message in (
        (["train.learning_rate"], "give KEY=V1,V2"),
        (["train.learning_rate=0.1", "train.learning_rate=0.2"], "given twice"),
        (["train.learning_rate=0.1,0.1"], "listed twice"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad)
    with pytest.raises(ConfigError):  # an unknown key fails at planning, before any training
        Sweep(teacher_data, ["dlrm"], [0.02], preset="tiny", grid={"train.no_such_key": ["1"]}).plan()


def test_the_chosen_recipe_is_the_first_seeds_best_on_validation() -> None:
    from wukong.experiments.sweep import chosen_recipes

    def rec(point: int, g: int, valid: float, test: float, status: str = "ok") -> dict:
        grid = {"train.learning_rate": ("0.001", "0.004")[g]}
        return {"id": f"wukong-{point:02d}-s0-g{g:02d}", "status": status, "model": "wukong", "family": "wukong",
                "point": point, "seed": 0, "mflops_per_example": 0.1, "grid": grid,
                "valid": {"logloss": valid}, "test": {"logloss": test}}  # fmt: skip

    records = [rec(0, 0, 0.50, 0.40), rec(0, 1, 0.49, 0.45), rec(1, 0, 0.48, 0.50), rec(1, 1, 0.40, 0.30, "failed")]
    assert chosen_recipes(records) == {
        ("wukong", 0): {"train.learning_rate": "0.004"},  # valid, not test, chooses
        ("wukong", 1): {"train.learning_rate": "0.001"},  # a failed trial never wins
    }


@pytest.mark.slow
def test_a_grid_sweep_tunes_on_the_first_seed_and_adds_seeds_on_resume(teacher_data: str, tmp_path: Path) -> None:
    from wukong.data.errors import DataError
    from wukong.experiments.report import write_report
    from wukong.experiments.sweep import Sweep

    def sweep(seeds: int) -> Sweep:
        grid = {"train.learning_rate": ["0.0001", "0.01"]}
        return Sweep(teacher_data, ["dlrm"], [0.05], tmp_path, seeds, preset="tiny", overrides=QUICK, grid=grid)

    first = sweep(1).run()
    without = Sweep(teacher_data, ["dlrm"], [0.05], tmp_path, 1, preset="tiny", overrides=QUICK)
    with pytest.raises(DataError, match="other grid"):  # resuming a grid sweep without its grid is refused
        without.run()
    assert sorted(r["id"] for r in first) == ["dlrm-00-s0-g00", "dlrm-00-s0-g01"]
    best = min(first, key=lambda r: r["valid"]["logloss"])
    both = sweep(2).run()  # raising the seeds resumes the same folder
    assert len(both) == 3 and [r["id"] for r in both if r["seed"] == 1] == [best["id"].replace("-s0-", "-s1-")]
    report = tmp_path / "report.md"

    write_report(tmp_path)
    points = report.read_text().split("## Points")[1]
    rows = [line for line in points.splitlines() if line.startswith("| dlrm")]
    assert len(rows) == 1 and "| 2 " in rows[0]  # one point, two seeds, each its grid's best
    assert f"learning_rate={best['grid']['train.learning_rate']}" in rows[0]
