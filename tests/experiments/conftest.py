"""A tiny teacher dataset (true probabilities stored, so excess LogLoss is reported) shared by the tests."""

from __future__ import annotations

import pytest

from wukong.cli import main

# Few steps of the tiny preset: a trial takes seconds.
QUICK = ["train.batch_size=128", "train.warmup_steps=2", "train.log_every=10", "train.checkpoint_every=0"]


@pytest.fixture(scope="module")
def teacher_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("data") / "teacher"
    source = ["--source", "teacher", "--rows", "3000", "--cardinality", "60", "--teacher-fields", "6"]
    code = main(["data", "prepare", *source, "--output", str(folder), "--quiet"])
    assert code == 0
    return str(folder)
