"""Upscaling rules to a FLOP budget, and the throughput measurement's arithmetic (no timing asserted)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from wukong.benchmark import Throughput, format_table, model_throughput
from wukong.config import MODEL_NAMES, Config
from wukong.model.build import build_arch
from wukong.model.flops import count_flops
from wukong.model.scaling import (
    MAX_WUKONG_LAYERS,
    RULES,
    TOLERANCE,
    config_for_flops,
    mflops_per_example,
    scale_widths,
    scaled_arch_config,
    scaled_config,
)
from wukong.schema import FeatureSchema

from .test_flops import measured_and_analytic


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_flops_grow_with_the_width_factor(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    costs = [mflops_per_example(name, tiny_schema, scale_widths(tiny.model, f)) for f in (0.5, 1, 2, 4)]
    assert costs == sorted(costs) and costs[0] < costs[-1]


TARGETS = (0.04, 0.2, 1.0, 5.0)  # MFLOP/example: from the tiny base, Wukong shrinks, deepens, then widens


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_upscaled_configs_build_and_hit_the_target(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    configs = [scaled_config(name, tiny_schema, tiny.model, target) for target in TARGETS]
    costs = [mflops_per_example(name, tiny_schema, config) for config in configs]  # builds each whole model
    assert all(config.name == name for config in configs)
    for cost, target in zip(costs, TARGETS):
        assert cost == pytest.approx(target, rel=0.05)
    assert config_for_flops(name, tiny_schema, tiny.model, TARGETS[1]) == configs[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_upscaling_is_monotone_across_a_depth_step(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    """Targets 1% apart around the cost where the rule adds a layer (the sawtooth of the widths)."""
    rule = RULES[name]
    step = mflops_per_example(name, tiny_schema, rule.config(tiny.model, 1, rule.start(1)))
    targets = [step * (1 + delta) for delta in np.linspace(-0.05, 0.05, 11)]
    costs = [mflops_per_example(name, tiny_schema, scaled_config(name, tiny_schema, tiny.model, t)) for t in targets]
    assert costs == sorted(costs)
    assert all(cost == pytest.approx(t, rel=0.05) for cost, t in zip(costs, targets))


@pytest.mark.slow
def test_compact_wukong_upscaling_is_monotone_and_on_target(tiny: Config, tiny_schema: FeatureSchema) -> None:
    """The Wukong rule serves both layer forms: compact configs keep their form, hit every target
    (from one shrunk layer to eight wide ones) and grow monotonically across a depth step."""
    base, rule = dataclasses.replace(tiny.model, layer_form="compact"), RULES["wukong"]
    step = mflops_per_example("wukong", tiny_schema, rule.config(base, 1, rule.start(1)))
    targets = sorted([*TARGETS, *(step * (1 + delta) for delta in np.linspace(-0.05, 0.05, 5))])
    configs = [scaled_config("wukong", tiny_schema, base, target) for target in targets]
    costs = [mflops_per_example("wukong", tiny_schema, config) for config in configs]
    assert all(config.layer_form == "compact" for config in configs)
    assert [config.num_layers for config in configs][:: len(configs) - 1] == [1, MAX_WUKONG_LAYERS]
    assert costs == sorted(costs)
    assert all(cost == pytest.approx(target, rel=0.05) for cost, target in zip(costs, targets))


def test_wukong_grows_layers_first_then_widths(tiny: Config, tiny_schema: FeatureSchema) -> None:
    rule, base = RULES["wukong"], tiny.model
    five_layers = rule.config(base, 4, 1.0)
    at_five = scaled_config("wukong", tiny_schema, base, mflops_per_example("wukong", tiny_schema, five_layers))
    assert at_five == five_layers  # depth 5 at the base widths
    eight = mflops_per_example("wukong", tiny_schema, rule.config(base, MAX_WUKONG_LAYERS - 1, 1.0))
    wide = scaled_config("wukong", tiny_schema, base, 4 * eight)
    assert wide.num_layers == MAX_WUKONG_LAYERS
    for field in ("num_fmb_embeddings", "num_lcb_embeddings", "fm_rank"):
        assert getattr(wide, field) > getattr(base, field)
    assert wide.fmb_mlp[0] > base.fmb_mlp[0] and wide.head_mlp[0] > base.head_mlp[0]
    small = scaled_config("wukong", tiny_schema, base, TARGETS[0])
    assert small.num_layers == 1 and small.fmb_mlp[0] < base.fmb_mlp[0]


def test_baselines_grow_in_width_and_depth(tiny: Config, tiny_schema: FeatureSchema) -> None:
    base = tiny.model
    dlrm = scaled_config("dlrm", tiny_schema, base, 40.0)
    assert len(dlrm.dlrm.top_mlp) > len(base.dlrm.top_mlp) and dlrm.dlrm.top_mlp[0] > base.dlrm.top_mlp[0]
    dcn = scaled_config("dcnv2", tiny_schema, base, 40.0)
    assert dcn.dcnv2.num_cross_layers > base.dcnv2.num_cross_layers and dcn.dcnv2.rank > base.dcnv2.rank
    assert len(dcn.dcnv2.deep_mlp) > len(base.dcnv2.deep_mlp)
    final = scaled_config("finalmlp", tiny_schema, base, 40.0)
    assert len(final.finalmlp.stream1_mlp) > len(base.finalmlp.stream1_mlp)
    assert final.finalmlp.stream1_mlp[-1] % final.finalmlp.num_heads == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_upscaled_flops_are_exact(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    """The analytic count of a grown model (deeper and wider than any preset) against FlopCounterMode."""
    config = scaled_config(name, tiny_schema, tiny.model, 3.0)
    measured, analytic = measured_and_analytic(name, tiny_schema, config, batch_size=8)
    assert analytic == pytest.approx(measured, rel=0.05)
    assert measured / 8 / 1e6 == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_arch_alone_is_sized_without_an_embedding_layer(name: str, tiny: Config) -> None:
    """``scaled_arch_config``: the same rule with the arch's own cost (what benchmarks/gpu_dense.py sizes)."""
    for target in (0.2, 5.0):
        config = scaled_arch_config(name, 12, tiny.model, target, num_dense_rows=1)
        assert config.name == name
        assert count_flops(build_arch(name, 12, config, 1)).mflops == pytest.approx(target, rel=TOLERANCE)


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


@pytest.mark.slow
def test_model_throughput_runs_a_real_step(tiny: Config, tiny_schema: FeatureSchema) -> None:
    result = model_throughput("dcnv2", tiny_schema, tiny.model, batch_size=16, seconds=0.0, burst=lambda: 1.0)
    assert result.examples_per_s > 0
    assert result.mflops_per_example == pytest.approx(mflops_per_example("dcnv2", tiny_schema, tiny.model))
