"""benchmarks/teacher_first_order.py: the additive part of a teacher's logit, and its calibration."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from wukong.data.sources.teacher import Teacher, TeacherConfig

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def first_order(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import teacher_first_order

    return teacher_first_order


def variance_explained(module: ModuleType, config: TeacherConfig) -> float:
    """Share of the logit's variance that the estimated first-order part explains, on fresh rows."""
    teacher = Teacher(config, 0)
    predict = module.first_order(teacher, 200_000, np.random.default_rng(1), chunk=50_000)
    dense, ids = teacher.draw(np.random.default_rng(2), 20_000)
    logit = teacher.logit(dense, ids)
    return 1 - np.var(logit - predict(dense, ids)) / np.var(logit)


def test_first_order_part_explains_a_first_order_teacher_not_a_high_order_one(first_order: ModuleType) -> None:
    small = dict(num_sparse=4, num_dense=1, max_cardinality=50, width=32, hidden=32)
    additive = variance_explained(first_order, TeacherConfig(**small, order=1))
    interacting = variance_explained(first_order, TeacherConfig(**small, order=4))
    # order 1: only the readout's tanh couples the fields; order 4: most units multiply several fields
    assert additive > 0.8 and interacting < additive - 0.2


def test_calibration_recovers_a_logistic_scale_and_offset(first_order: ModuleType) -> None:
    rng = np.random.default_rng(0)
    score = rng.normal(size=200_000)
    labels = (rng.random(score.size) < 1 / (1 + np.exp(-(2.0 * score - 0.5)))).astype(float)
    a, b = first_order.calibrate(score, labels)
    assert a == pytest.approx(2.0, abs=0.05) and b == pytest.approx(-0.5, abs=0.05)


@pytest.mark.parametrize(
    ("setting", "message"),
    [("colour=3", "no teacher field 'colour'"), ("order=two", "order takes an integer"), ("order=0", "order=0")],
)
def test_bad_settings_exit_2_with_one_line(
    first_order: ModuleType, setting: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr("sys.argv", ["teacher_first_order.py", "--set", setting])
    with pytest.raises(SystemExit) as exit_info:
        first_order.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
