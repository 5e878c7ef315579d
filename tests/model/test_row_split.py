"""``model.row_split``: Wukong cuts each d-wide embedding into s rows of d/s before its layers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from wukong.config import load_config
from wukong.data.batch import random_batch
from wukong.model import build_arch, build_model, count_flops
from wukong.model.stack import WukongArch

SHAPE = dict(num_layers=2, num_fmb=3, num_lcb=4, rank=2, fmb_hidden=[8], head_hidden=[8])


@pytest.mark.parametrize("layer_form", ["expand", "compact"])
@pytest.mark.parametrize("split", [2, 4])
def test_a_split_arch_is_the_plain_arch_on_the_cut_rows(layer_form: str, split: int) -> None:
    """Row ``s·i + j`` of the split input is coordinates ``j·d/s .. (j+1)·d/s`` of feature i."""
    n, d = 5, 8
    split_arch = WukongArch(n, d, layer_form=layer_form, row_split=split, **SHAPE).eval()
    plain = WukongArch(n * split, d // split, layer_form=layer_form, **SHAPE).eval()
    plain.load_state_dict(split_arch.state_dict())
    x = torch.randn(6, n, d)
    cut = torch.stack([x[:, i, j * d // split : (j + 1) * d // split] for i in range(n) for j in range(split)], 1)
    torch.testing.assert_close(split_arch(x), plain(cut))
    assert split_arch.layers[0].num_inputs == n * split


def test_no_split_is_the_default_and_keeps_the_rows() -> None:
    tiny = load_config("tiny")
    assert tiny.model.row_split == 1
    arch = build_arch("wukong", 7, tiny.model)
    assert arch.layers[0].num_inputs == 7 and arch.layers[0].dim == tiny.model.embedding_dim


@pytest.mark.parametrize("split", [1, 4])
def test_an_empty_batch_passes_through(split: int) -> None:
    arch = WukongArch(5, 8, row_split=split, **SHAPE).eval()
    assert arch(torch.randn(0, 5, 8)).shape == (0,)


@pytest.mark.parametrize("layer_form", ["expand", "compact"])
def test_analytic_flops_of_split_models_are_exact(layer_form: str) -> None:
    config = load_config("tiny", ["model.row_split=4", f"model.layer_form={layer_form}"])
    schema = config.data.synthetic_schema()
    model = build_model("wukong", schema, config.model).eval()
    unsplit = build_model("wukong", schema, load_config("tiny", [f"model.layer_form={layer_form}"]).model)
    batch = random_batch(schema, 8)
    with FlopCounterMode(display=False) as counter:
        model(batch.dense, batch.sparse)
    assert count_flops(model).total(8) == counter.get_total_flops()
    assert count_flops(model).total(8) != count_flops(unsplit).total(8)  # the layers see other shapes
