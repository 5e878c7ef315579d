"""The matmul peak and the ratios that divide by it (wukong.benchmark): every point beside its own peak."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from wukong import benchmark
from wukong.benchmark import (
    SPEED_REFERENCE_PRESET,
    SPEED_REFERENCE_SETTINGS,
    Throughput,
    beside_peak,
    matmul_gflops,
    model_throughput,
    peak_ratio,
    rate_beside_peak,
)
from wukong.config import Config, load_config
from wukong.model.build import build_arch
from wukong.model.flops import count_flops
from wukong.schema import FeatureSchema


def recording_bursts(values: list[float], log: list[str]) -> Callable[[], float]:
    """A peak source that returns ``values`` in turn and records each call in ``log``."""
    remaining = iter(values)

    def burst() -> float:
        log.append("burst")
        return next(remaining)

    return burst


def test_matmul_peak_is_a_positive_rate() -> None:
    assert matmul_gflops(size=64, seconds=0.01) > 0
    assert matmul_gflops(size=64, seconds=0.01, dtype=torch.float64) > 0


def test_beside_peak_takes_the_best_burst_around_the_measurement() -> None:
    log: list[str] = []
    value, peak = beside_peak(lambda: log.append("measure") or "result", 2, recording_bursts([5, 9, 7, 3], log))
    assert value == "result"
    assert log == ["burst", "burst", "measure", "burst", "burst"]
    assert peak == 9


def test_rate_beside_peak_interleaves_bursts_with_the_timed_slices() -> None:
    log: list[str] = []
    rate, peak = rate_beside_peak(lambda: log.append("step"), 0.0, 3, recording_bursts([4, 8, 6, 2, 100], log))
    bursts = [i for i, entry in enumerate(log) if entry == "burst"]
    assert len(bursts) == 4  # before the first slice, between slices, after the last
    assert bursts[0] == 2  # after the two warm-up calls
    assert all(b - a > 1 for a, b in itertools.pairwise(bursts))  # a slice of steps between any two bursts
    assert log[-1] == "burst"
    assert peak == 8  # the best of the bursts it ran, not the later (unrelated) 100
    assert rate > 0


def test_ratio_divides_by_the_points_own_peak() -> None:
    point = Throughput("wukong", 10.0, 1, 8, examples_per_s=1000.0, peak_gflops=60.0)
    assert point.achieved_gflops == pytest.approx(30.0)  # 3 x 10 MFLOP x 1000/s
    assert point.ratio == pytest.approx(0.5)
    assert peak_ratio(10.0, 1000.0, 60.0) == pytest.approx(point.ratio)


@pytest.mark.slow
def test_model_throughput_reports_the_peak_measured_beside_it(tiny: Config, tiny_schema: FeatureSchema) -> None:
    log: list[str] = []
    result = model_throughput(
        "wukong", tiny_schema, tiny.model, 16, 0.0, burst=recording_bursts([30.0, 50.0, 40.0, 10.0], log)
    )
    assert log.count("burst") == 4
    assert result.peak_gflops == 50.0
    assert result.ratio == pytest.approx(result.achieved_gflops / 50.0)


@pytest.mark.slow
def test_bf16_points_run_under_autocast_beside_a_bf16_peak(
    tiny: Config, tiny_schema: FeatureSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    dtypes: list[torch.dtype] = []
    monkeypatch.setattr(benchmark, "matmul_gflops", lambda dtype=torch.float32: dtypes.append(dtype) or 100.0)
    contexts: list[tuple[str, str]] = []
    original = benchmark.autocast
    monkeypatch.setattr(benchmark, "autocast", lambda *args: contexts.append(args) or original(*args))
    result = model_throughput("wukong", tiny_schema, tiny.model, 16, 0.0, precision="bf16")
    assert result.model == "wukong+bf16"
    assert contexts and set(contexts) == {("bf16", "cpu")}  # every step under bf16 autocast
    assert dtypes == [torch.bfloat16] * 4  # before, between and after the slices: bf16 bursts only
    assert result.peak_gflops == 100.0


def test_the_speed_reference_is_issue_13s_config_without_the_recipe() -> None:
    """5.07 MFLOP/example on 10 fields, as issue 13 timed the reference, whatever regularisers the
    preset's training recipe adds."""
    model = load_config(SPEED_REFERENCE_PRESET, list(SPEED_REFERENCE_SETTINGS)).model
    arch = build_arch("wukong", 10, model)
    assert count_flops(arch).per_example == 5_065_728
    assert not [m for m in arch.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert not [m for m in arch.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert load_config(SPEED_REFERENCE_PRESET).model.mlp_dropout > 0  # what the settings take away
