"""Width scaling to a FLOP budget, and the throughput measurement's arithmetic (no timing asserted)."""

from __future__ import annotations

import pytest

from wukong.benchmark import Throughput, format_table, model_throughput
from wukong.config import MODEL_NAMES, Config
from wukong.model.scaling import config_for_flops, mflops_per_example, scale_widths
from wukong.schema import FeatureSchema


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_flops_grow_with_the_width_factor(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    costs = [mflops_per_example(name, tiny_schema, scale_widths(tiny.model, f)) for f in (0.5, 1, 2, 4)]
    assert costs == sorted(costs) and costs[0] < costs[-1]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_for_flops_hits_the_target(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    config = config_for_flops(name, tiny_schema, tiny.model, target_mflops=2.0)
    assert mflops_per_example(name, tiny_schema, config) == pytest.approx(2.0, rel=0.1)


def test_unreachable_target_is_explained(tiny: Config, tiny_schema: FeatureSchema) -> None:
    with pytest.raises(ValueError, match="cannot reach 1e-06 MFLOP/example"):
        config_for_flops("wukong", tiny_schema, tiny.model, target_mflops=1e-6)


def test_dense_feature_mlp_is_not_scaled(tiny: Config) -> None:
    scaled = scale_widths(tiny.model, 4)
    assert scaled.dense_mlp == tiny.model.dense_mlp
    assert scaled.head_mlp == [w * 4 for w in tiny.model.head_mlp]
    assert scaled.num_fmb_embeddings == 4 * tiny.model.num_fmb_embeddings


def test_throughput_arithmetic() -> None:
    result = Throughput(
        "wukong", mflops_per_example=10.0, dense_params=1, batch_size=8, examples_per_s=1000.0, peak_gflops=60.0
    )
    assert result.achieved_gflops == pytest.approx(30.0)  # 3 x 10 MFLOP x 1000 /s
    assert result.ratio == pytest.approx(0.5)
    assert "50%" in format_table([result])


def test_model_throughput_runs_a_real_step(tiny: Config, tiny_schema: FeatureSchema) -> None:
    result = model_throughput("dcnv2", tiny_schema, tiny.model, batch_size=16, seconds=0.0, peak_gflops=1.0)
    assert result.examples_per_s > 0
    assert result.mflops_per_example == pytest.approx(mflops_per_example("dcnv2", tiny_schema, tiny.model))
