"""The journal survives a kill mid-write; a resumed experiment must repeat its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wukong.data.errors import DataError
from wukong.experiments.journal import Journal
from wukong.experiments.trials import TrialRunner, TrialSpec, pin_settings


def test_a_line_cut_short_by_a_kill_is_dropped_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text(json.dumps({"id": "a", "status": "ok"}) + "\n" + '{"id": "b", "sta')
    journal = Journal(path)
    assert list(journal.records()) == ["a"]  # b did not finish: it runs again
    journal.append({"id": "b", "status": "ok"})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_a_damaged_line_in_the_middle_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(DataError, match=r"trials.jsonl:2: not a JSON record"):
        Journal(path).records()


def test_settings_are_pinned(tmp_path: Path) -> None:
    path = tmp_path / "sweep.json"
    pin_settings(path, {"data": "d", "seeds": 2, "trials": 4}, may_change=("trials",))
    pin_settings(path, {"data": "d", "seeds": 2, "trials": 8}, may_change=("trials",))
    with pytest.raises(DataError, match="other seeds"):
        pin_settings(path, {"data": "d", "seeds": 3, "trials": 8}, may_change=("trials",))


def test_a_recorded_trial_must_match_the_one_asked_for(tmp_path: Path) -> None:
    runner = TrialRunner("d", tmp_path, log=lambda _: None)
    spec = TrialSpec("t0", "dlrm", "tiny", ("train.learning_rate=0.01",))
    runner.journal.append({"id": "t0", "status": "ok", **spec.identity()})
    assert runner.run([spec])["t0"]["status"] == "ok"  # finished: nothing runs
    changed = TrialSpec("t0", "dlrm", "tiny", ("train.learning_rate=0.02",))
    with pytest.raises(DataError, match="trial t0 was run as"):
        runner.run([changed])
