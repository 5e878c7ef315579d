"""The analytic FLOP formulas against torch's FlopCounterMode (within 5%)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from wukong.config import MODEL_NAMES, ModelConfig, load_config
from wukong.data.batch import random_batch
from wukong.model import build_model, count_flops
from wukong.model.flops import FlopCount
from wukong.model.mlp import MLP
from wukong.schema import FeatureSchema

CONFIGS = {
    "tiny": ("tiny", []),
    "deeper": (
        "tiny",
        [
            "model.embedding_dim=24",
            "model.num_layers=4",
            "model.fm_projection=static",
            "model.num_fmb_embeddings=5",
            "model.num_lcb_embeddings=6",
            "model.dlrm.top_mlp=[128,64,32]",
            "model.dcnv2.num_cross_layers=4",
            "model.finalmlp.num_heads=8",
            "model.finalmlp.stream2_mlp=[96,48]",
        ],
    ),
    "wide": (
        "tiny",
        [
            "model.embedding_dim=32",
            "model.num_dense_embeddings=3",
            "model.fm_rank=12",
            "model.fmb_mlp=[256,128]",
            "model.head_mlp=[256,64]",
            "model.dcnv2.rank=32",
            "data.num_sparse=11",
        ],
    ),
}


def measured_and_analytic(
    name: str, schema: FeatureSchema, config: ModelConfig, batch_size: int = 16
) -> tuple[int, int]:
    """FLOPs of one forward pass of a batch: as FlopCounterMode counts them, and by the formulas."""
    model = build_model(name, schema, config)
    batch = random_batch(schema, batch_size)
    with FlopCounterMode(display=False) as counter:
        model(batch.dense, batch.sparse)
    return counter.get_total_flops(), count_flops(model).total(batch_size)


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_analytic_flops_match_flop_counter(name: str, config_name: str) -> None:
    preset, overrides = CONFIGS[config_name]
    cfg = load_config(preset, overrides)
    measured, analytic = measured_and_analytic(name, cfg.data.synthetic_schema(), cfg.model)
    assert measured > 0
    assert analytic == pytest.approx(measured, rel=0.05), f"{name}/{config_name}: {analytic} vs {measured}"


def test_mlp_formula() -> None:
    mlp = MLP(10, [20, 30], out_features=1)
    assert count_flops(mlp) == FlopCount(2 * (10 * 20 + 20 * 30 + 30 * 1))


def test_per_batch_work_does_not_scale_with_batch() -> None:
    count = FlopCount(per_example=100, per_batch=7)
    assert count.total(1) == 107
    assert count.total(10) == 1007


def test_unknown_module_has_no_formula() -> None:
    with pytest.raises(TypeError, match="no FLOP formula for Conv1d"):
        count_flops(torch.nn.Conv1d(1, 1, 1))
