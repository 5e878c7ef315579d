"""The compact Wukong layer (``model.layer_form=compact``): a bottleneck residual that keeps the n rows."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from wukong.config import Config, ModelConfig, load_config
from wukong.data.batch import random_batch
from wukong.model import build_arch, build_model, count_flops
from wukong.model.flops import FlopCount
from wukong.model.init import Linear
from wukong.model.stack import CompactWukongLayer, WukongArch, WukongLayer
from wukong.model.summary import summarize_models
from wukong.schema import FeatureSchema

from .test_inference import SCHEMA, plain_inputs, trained_pair


def compact(config: Config, **changes) -> Config:
    return dataclasses.replace(config, model=dataclasses.replace(config.model, layer_form="compact", **changes))


def reference_compact(layer: CompactWukongLayer, x: torch.Tensor, norm: str) -> torch.Tensor:
    """The layer's formula written out: f = FMB (nF scalars), l = W_L x + b_L, LN(x + W_T [f; l] + b_T)."""
    batch, n, d = x.shape
    flat = x.reshape(batch, n * d)
    f = layer.fmb.activation(layer.fmb.mlp(layer.fmb.norm(layer.fmb.interactions(x).reshape(batch, -1))))
    linear = flat @ layer.linear.weight.T + layer.linear.bias
    summed = flat + torch.cat([f, linear], dim=1) @ layer.transform.weight.T + layer.transform.bias
    weight, bias = layer.norm.weight.reshape(-1), layer.norm.bias.reshape(-1)
    if norm == "layer":  # over all n·d values of the example
        return F.layer_norm(summed, (n * d,), weight, bias, layer.norm.eps).view(batch, n, d)
    return F.layer_norm(summed.view(batch, n, d), (d,), weight, bias, layer.norm.eps)


@pytest.mark.parametrize("norm", ["dim", "layer"])
@pytest.mark.parametrize("projection", ["static", "attentive"])
def test_compact_layer_equals_its_formula(projection: str, norm: str) -> None:
    layer = CompactWukongLayer(
        num_inputs=7, dim=5, num_fmb=3, num_lcb=4, rank=2, fmb_hidden=[8], projection=projection, norm=norm
    ).double()
    with torch.no_grad():  # non-trivial LayerNorm affine parameters, so they are exercised too
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(6, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference_compact(layer, x, norm))


@pytest.mark.parametrize(("n", "nf", "nl"), [(7, 3, 4), (5, 1, 9), (12, 20, 1)])
def test_compact_layers_keep_the_n_rows(n: int, nf: int, nl: int) -> None:
    d = 4
    layer = CompactWukongLayer(num_inputs=n, dim=d, num_fmb=nf, num_lcb=nl, rank=3, fmb_hidden=[8])
    assert layer(torch.randn(2, n, d)).shape == (2, n, d) and layer.num_outputs == n
    assert layer.fmb.mlp.out_features == nf  # nF scalars, not nF rows of d
    assert layer.linear.weight.shape == (nl, n * d) and layer.transform.weight.shape == (n * d, nf + nl)
    arch = WukongArch(
        num_features=n, dim=d, num_layers=3, num_fmb=nf, num_lcb=nl, rank=3, fmb_hidden=[8], head_hidden=[8],
        layer_form="compact",
    )  # fmt: skip
    assert [layer.num_inputs for layer in arch.layers] == [n, n, n]
    assert arch.head.in_features == n * d
    assert arch(torch.randn(5, n, d)).shape == (5,)


def test_flop_formula_of_a_compact_layer() -> None:
    n, d, nf, nl, k, hidden = 7, 5, 3, 4, 2, 8
    layer = CompactWukongLayer(num_inputs=n, dim=d, num_fmb=nf, num_lcb=nl, rank=k, fmb_hidden=[hidden])
    fm, fmb_mlp = 4 * n * d * k, 2 * (n * k * hidden + hidden * nf)
    assert count_flops(layer) == FlopCount(fm + fmb_mlp + 2 * n * d * nl + 2 * (nf + nl) * n * d)


COMPACT_CONFIGS = {
    "tiny": [],
    "attentive-relu-layer-norm": [
        "model.fm_projection=attentive",
        "model.fmb_activation=relu",
        "model.layer_norm=layer",
    ],
    "deep-narrow": [
        "model.num_layers=4",
        "model.num_fmb_embeddings=2",
        "model.num_lcb_embeddings=11",
        "model.fm_rank=3",
    ],
    "wide": ["model.embedding_dim=24", "model.num_dense_embeddings=3", "model.fmb_mlp=[96,32]", "data.num_sparse=9"],
}


@pytest.mark.parametrize("overrides", COMPACT_CONFIGS.values(), ids=COMPACT_CONFIGS)
def test_analytic_flops_of_compact_models_are_exact(overrides: list[str]) -> None:
    config = load_config("tiny", ["model.layer_form=compact", *overrides])
    schema = config.data.synthetic_schema()
    model = build_model("wukong", schema, config.model).eval()
    batch = random_batch(schema, 8)
    with FlopCounterMode(display=False) as counter:
        model(batch.dense, batch.sparse)
    assert count_flops(model).total(8) == counter.get_total_flops()


def test_layer_dropout_drops_the_bottleneck_in_training_only() -> None:
    x = torch.randn(64, 6, 4)
    kwargs = dict(num_inputs=6, dim=4, num_fmb=3, num_lcb=5, rank=2, fmb_hidden=[8])
    dropped, plain = CompactWukongLayer(**kwargs, dropout=0.5), CompactWukongLayer(**kwargs)
    plain.load_state_dict(dropped.state_dict())
    torch.testing.assert_close(dropped.eval()(x), plain.eval()(x))
    dropped.train()
    assert not torch.allclose(dropped(x), dropped(x))  # a fresh mask each call
    bottleneck = torch.cat([plain.fmb(x).flatten(1), plain.linear(x.flatten(1))], dim=1).detach()
    torch.manual_seed(0)
    out = dropped(x)
    torch.manual_seed(0)
    kept = F.dropout(torch.ones_like(bottleneck), 0.5)  # the same mask, scaled by 1/(1-p)
    assert (kept == 0).any()
    expected = F.layer_norm((x.flatten(1) + plain.transform(kept * bottleneck)).view(64, 6, 4), (4,))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_layer_norm_per_row_or_over_the_whole_layer() -> None:
    x = torch.randn(16, 6, 4) * torch.arange(1, 7).view(1, 6, 1)  # rows of different scales
    kwargs = dict(num_inputs=6, dim=4, num_fmb=3, num_lcb=3, rank=2, fmb_hidden=[8])
    torch.manual_seed(1)
    per_row = CompactWukongLayer(**kwargs)
    torch.manual_seed(1)  # the same weights: only the norm differs
    whole = CompactWukongLayer(**kwargs, norm="layer")
    torch.testing.assert_close(per_row.transform.weight, whole.transform.weight)
    rows, layer = per_row(x), whole(x)
    assert not torch.allclose(rows, layer)
    torch.testing.assert_close(rows.std(dim=2, unbiased=False), torch.ones(16, 6), atol=1e-3, rtol=0)
    torch.testing.assert_close(layer.flatten(1).std(dim=1, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    assert (layer.std(dim=2, unbiased=False) - 1).abs().max() > 0.05  # rows keep their relative scale
    assert per_row.norm.weight.shape == (4,) and whole.norm.weight.shape == (6, 4)


def test_expand_stays_the_default(tiny: Config) -> None:
    assert ModelConfig().layer_form == "expand" and tiny.model.layer_form == "expand"
    torch.manual_seed(3)
    default = build_arch("wukong", 7, tiny.model)
    torch.manual_seed(3)
    explicit = build_arch("wukong", 7, dataclasses.replace(tiny.model, layer_form="expand"))
    assert all(type(layer) is WukongLayer for layer in default.layers)
    rows, d = tiny.model.num_fmb_embeddings + tiny.model.num_lcb_embeddings, tiny.model.embedding_dim
    assert default.head.in_features == rows * d
    x = torch.randn(4, 7, d)
    torch.testing.assert_close(default(x), explicit(x), rtol=0, atol=0)


def test_set_layer_form_builds_compact_layers_with_the_model_knobs() -> None:
    config = load_config(
        "tiny", ["model.layer_form=compact", "model.linear_init=xavier_normal", "model.layer_dropout=0.2"]
    )
    arch = build_arch("wukong", 7, config.model)
    assert all(type(layer) is CompactWukongLayer for layer in arch.layers)
    assert all(layer.dropout.p == 0.2 for layer in arch.layers)
    for linear in (arch.layers[0].linear, arch.layers[0].transform):  # model.linear_init reaches W_L and W_T
        assert isinstance(linear, Linear) and linear.linear_init == "xavier_normal" and (linear.bias == 0).all()


def test_a_bad_layer_form_is_rejected() -> None:
    with pytest.raises(ValueError, match="layer form must be one of expand, compact, got 'wide'"):
        WukongArch(
            num_features=5, dim=4, num_layers=1, num_fmb=2, num_lcb=2, rank=2, fmb_hidden=[8], head_hidden=[8],
            layer_form="wide",
        )  # fmt: skip


def test_summary_counts_the_compact_model(tiny: Config, tiny_schema: FeatureSchema) -> None:
    (expand,) = summarize_models(tiny_schema, tiny.model, ["wukong"])
    (small,) = summarize_models(tiny_schema, compact(tiny).model, ["wukong"])
    model = build_model("wukong", tiny_schema, compact(tiny).model)
    assert small.dense_params == model.parameter_counts()["dense"] != expand.dense_params
    assert small.mflops_per_example == count_flops(model).mflops


def test_a_tiny_compact_model_learns() -> None:
    n, d = 6, 8
    arch = WukongArch(
        num_features=n, dim=d, num_layers=2, num_fmb=4, num_lcb=4, rank=3, fmb_hidden=[32], head_hidden=[32],
        layer_form="compact",
    )  # fmt: skip
    x = torch.randn(256, n, d)
    labels = ((x[:, 0] * x[:, 1]).sum(1) + x[:, 2, 0] > 0).float()  # a second-order teacher
    optimizer = torch.optim.Adam(arch.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = F.binary_cross_entropy_with_logits(arch(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_the_plain_compact_model_matches_the_torchrec_model(tiny: Config) -> None:
    reference, plain = trained_pair("wukong", compact(tiny, layer_norm="layer"))
    assert all(type(layer) is CompactWukongLayer for layer in plain.arch.layers)
    batch = random_batch(SCHEMA, 9, torch.Generator().manual_seed(1), max_multi_hot=3)
    with torch.no_grad():
        expected = torch.sigmoid(reference(batch.dense, batch.sparse))
        torch.testing.assert_close(plain(*plain_inputs(batch, SCHEMA)), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_compact_model_exports(tiny: Config) -> None:
    reference, plain = trained_pair("wukong", compact(tiny))
    program = torch.export.export(plain, plain.example_inputs(), dynamic_shapes=plain.dynamic_shapes())
    saved = io.BytesIO()
    torch.export.save(program, saved)
    loaded = torch.export.load(io.BytesIO(saved.getvalue())).module()
    for size in (1, 17):
        batch = random_batch(SCHEMA, size, torch.Generator().manual_seed(size))
        with torch.no_grad():
            expected = torch.sigmoid(reference(batch.dense, batch.sparse))
            torch.testing.assert_close(loaded(*plain_inputs(batch, SCHEMA)), expected, rtol=0, atol=1e-6)


def test_compact_parameters_are_all_used(tiny: Config) -> None:
    """Every parameter of a compact arch gets a gradient (no dead branch)."""
    arch = build_arch("wukong", 7, compact(tiny).model)
    arch(torch.randn(4, 7, 16)).sum().backward()
    unused = [name for name, p in arch.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused
