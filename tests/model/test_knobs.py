"""Model knobs: each one changes the model the way its documentation says, for every model alike."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from wukong.config import MODEL_NAMES, Config, ConfigError, ModelConfig, load_config
from wukong.data.batch import random_batch
from wukong.model import build_arch, build_model, count_flops
from wukong.model.blocks import FactorizationMachineBlock, StaticProjection
from wukong.model.embedding import FeatureEmbedding
from wukong.model.init import Linear
from wukong.model.mlp import MLP
from wukong.model.stack import CompactWukongLayer, WukongLayer
from wukong.schema import FeatureSchema, SparseFeature

from .test_models import _materialize_like_torchrec

# The MLPs each model's interaction knobs act on, by the attribute path of their modules.
INTERACTION_MLPS = {
    "wukong": ("layers.0.fmb.mlp", "layers.1.fmb.mlp", "head"),
    "dlrm": ("top",),
    "dcnv2": ("deep",),
    "finalmlp": ("stream1", "stream2"),
}


def mlps(arch: nn.Module, name: str) -> dict[str, MLP]:
    return {path: arch.get_submodule(path) for path in INTERACTION_MLPS[name]}


def kinds(mlp: MLP) -> list[type]:
    return [type(layer) for layer in mlp if not isinstance(layer, (nn.Linear, nn.ReLU))]


def with_model(tiny: Config, **changes) -> ModelConfig:
    return dataclasses.replace(tiny.model, **changes)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dropout_changes_train_outputs_but_not_eval_ones(name: str, tiny: Config) -> None:
    arch = build_arch(name, 7, with_model(tiny, mlp_dropout=0.5))
    x = torch.randn(16, 7, tiny.model.embedding_dim)
    assert all(nn.Dropout in kinds(mlp) for mlp in mlps(arch, name).values())
    arch.train()
    assert not torch.allclose(arch(x), arch(x))  # a fresh mask each call
    arch.eval()
    torch.testing.assert_close(arch(x), arch(x))


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_norm_sits_in_every_hidden_layer_of_the_interaction_mlps(name: str, norm: str, tiny: Config) -> None:
    arch = build_arch(name, 7, with_model(tiny, mlp_norm=norm))
    expected = nn.BatchNorm1d if norm == "batchnorm" else nn.LayerNorm
    for path, mlp in mlps(arch, name).items():
        hidden = sum(isinstance(layer, nn.ReLU) for layer in mlp)
        assert kinds(mlp) == [expected] * hidden, path
        # Linear -> Norm -> ReLU: each norm normalises the Linear right before it.
        for i, layer in enumerate(mlp):
            if isinstance(layer, expected):
                assert isinstance(mlp[i - 1], nn.Linear) and isinstance(mlp[i + 1], nn.ReLU)
    x = torch.randn(16, 7, tiny.model.embedding_dim)
    if norm == "batchnorm":  # batch statistics in training, running averages in evaluation
        assert not torch.allclose(arch.train()(x), arch.eval()(x))


def test_group_keys_override_the_model_wide_ones(tiny: Config) -> None:
    config = with_model(tiny, mlp_dropout=0.3, mlp_norm="layernorm", fmb_dropout=0.0, head_norm="batchnorm")
    arch = build_arch("wukong", 7, config)
    assert kinds(arch.layers[0].fmb.mlp) == [nn.LayerNorm]  # fmb_dropout 0 wins over mlp_dropout
    assert kinds(arch.head) == [nn.BatchNorm1d, nn.Dropout]  # head_norm wins, dropout inherited
    assert arch.head[3].p == 0.3
    config = dataclasses.replace(
        config, dlrm=dataclasses.replace(config.dlrm, dropout=0.1, norm="none"), mlp_dropout=0.0
    )
    top = build_arch("dlrm", 7, config).top
    assert kinds(top) == [nn.Dropout, nn.Dropout] and top[2].p == 0.1


def test_dense_mlp_has_its_own_settings(tiny: Config, tiny_schema: FeatureSchema) -> None:
    model = build_model("dlrm", tiny_schema, with_model(tiny, mlp_dropout=0.5))
    assert kinds(model.embedding.dense_arch) == []  # not inherited from mlp_*
    model = build_model("dlrm", tiny_schema, with_model(tiny, dense_dropout=0.2, dense_norm="batchnorm"))
    assert kinds(model.embedding.dense_arch) == [nn.BatchNorm1d, nn.Dropout]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_norm_and_dropout_keep_the_flop_count_exact(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    knobs = with_model(tiny, mlp_dropout=0.2, mlp_norm="batchnorm", head_norm="layernorm", fmb_activation="relu")
    model = build_model(name, tiny_schema, knobs).eval()
    batch = random_batch(tiny_schema, 8)
    with FlopCounterMode(display=False) as counter:
        model(batch.dense, batch.sparse)
    assert count_flops(model).total(8) == counter.get_total_flops()
    assert count_flops(model) == count_flops(build_model(name, tiny_schema, tiny.model))


def layer_std(layer: nn.Module) -> float:
    return layer.weight.std().item()


@pytest.mark.parametrize(
    ("scheme", "expected_std"),
    [
        ("xavier_normal", lambda fan_in, fan_out: (2 / (fan_in + fan_out)) ** 0.5),
        ("xavier_uniform", lambda fan_in, fan_out: (2 / (fan_in + fan_out)) ** 0.5),  # U(±a): std a/√3
        ("kaiming_normal", lambda fan_in, fan_out: (2 / fan_in) ** 0.5),
        ("torch", lambda fan_in, fan_out: (1 / (3 * fan_in)) ** 0.5),  # U(±1/√in)
    ],
)
def test_linear_init_survives_meta_materialisation(scheme: str, expected_std, tiny: Config) -> None:
    config = with_model(tiny, linear_init=scheme, head_mlp=[512])
    with torch.device("meta"):
        arch = build_arch("wukong", 30, config)
    _materialize_like_torchrec(arch)  # what DMP does: allocate, then reset_parameters()
    head = arch.head[0]  # a 256 -> 512 Linear: enough entries for a tight estimate
    assert layer_std(head) == pytest.approx(expected_std(256, 512), rel=0.05)
    lcb = arch.layers[0].lcb  # LCBs follow the scheme too (fan-in n=30, fan-out nL=8)
    if scheme != "torch":
        assert (head.bias == 0).all()
        assert lcb.linear_init == scheme
    assert all(layer.linear_init == scheme for layer in arch.modules() if isinstance(layer, Linear))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_linear_init_reaches_every_model(name: str, tiny: Config) -> None:
    arch = build_arch(name, 7, with_model(tiny, linear_init="xavier_normal"))
    linears = [m for m in arch.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m, Linear) and m.linear_init == "xavier_normal" for m in linears)
    assert all((m.bias == 0).all() for m in linears if m.bias is not None)


@pytest.mark.parametrize(("init", "std"), [("normal", 1.0), ("xavier_normal", (2 / (400 + 50)) ** 0.5)])
def test_projection_init(init: str, std: float) -> None:
    projection = StaticProjection(num_inputs=400, rank=50, init=init)
    assert projection.weight.std().item() == pytest.approx(std, rel=0.05)
    projection.weight.data.zero_()
    projection.reset_parameters()  # kept for meta materialisation
    assert projection.weight.std().item() == pytest.approx(std, rel=0.05)


def test_projection_init_is_configured(tiny: Config) -> None:
    arch = build_arch("wukong", 300, with_model(tiny, fm_projection_init="normal", fm_rank=40))
    assert arch.layers[0].fmb.projection.weight.std().item() == pytest.approx(1.0, rel=0.05)


def test_fmb_activation() -> None:
    x = torch.randn(32, 6, 4)
    kwargs = dict(num_inputs=6, dim=4, num_outputs=3, rank=2, hidden=[8])
    relu = FactorizationMachineBlock(**kwargs, activation="relu")
    plain = FactorizationMachineBlock(**kwargs)
    plain.load_state_dict(relu.state_dict())
    torch.testing.assert_close(relu(x), torch.relu(plain(x)))
    assert (plain(x) < 0).any() and (relu(x) == 0).any()


def test_layer_dropout_drops_the_interaction_branch_in_training_only() -> None:
    x = torch.randn(64, 6, 4)
    kwargs = dict(num_inputs=6, dim=4, num_fmb=3, num_lcb=3, rank=2, fmb_hidden=[8])
    dropped, plain = WukongLayer(**kwargs, dropout=0.5), WukongLayer(**kwargs)
    plain.load_state_dict(dropped.state_dict())
    torch.testing.assert_close(dropped.eval()(x), plain.eval()(x))
    branch = torch.cat([plain.fmb(x), plain.lcb(x)], dim=1).detach()
    torch.manual_seed(0)
    out = dropped.train()(x)
    torch.manual_seed(0)
    kept = torch.nn.functional.dropout(torch.ones_like(branch), 0.5)  # the same mask, scaled by 1/(1-p)
    assert (kept == 0).any() and not torch.allclose(out, plain(x))
    torch.testing.assert_close(out, torch.nn.functional.layer_norm(kept * branch + x, (4,)), atol=1e-5, rtol=1e-5)


def test_layer_norm_over_the_whole_layer() -> None:
    x = torch.randn(16, 6, 4) * torch.arange(1, 7).view(1, 6, 1)  # rows of different scales
    kwargs = dict(num_inputs=6, dim=4, num_fmb=3, num_lcb=3, rank=2, fmb_hidden=[8])
    per_row, per_layer = WukongLayer(**kwargs).eval(), WukongLayer(**kwargs, norm="layer").eval()
    rows, whole = per_row(x), per_layer(x)
    torch.testing.assert_close(rows.std(dim=2, unbiased=False), torch.ones(16, 6), atol=1e-3, rtol=0)
    torch.testing.assert_close(whole.flatten(1).std(dim=1, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    assert (whole.std(dim=2, unbiased=False) - 1).abs().max() > 0.05  # rows keep their relative scale
    assert per_layer.norm.weight.shape == (6, 4)


@pytest.mark.parametrize("layer_class", [WukongLayer, CompactWukongLayer])
def test_layer_norm_none_keeps_the_residual_sum(layer_class: type) -> None:
    x = torch.randn(16, 6, 4) * 5
    kwargs = dict(num_inputs=6, dim=4, num_fmb=3, num_lcb=3, rank=2, fmb_hidden=[8])
    torch.manual_seed(2)
    normed = layer_class(**kwargs).eval()
    torch.manual_seed(2)  # the same weights: only the norm differs
    plain = layer_class(**kwargs, norm="none").eval()
    out = plain(x)
    torch.testing.assert_close(normed(x), torch.nn.functional.layer_norm(out, (4,)), atol=1e-4, rtol=1e-4)
    assert out.std(dim=2).mean() > 2  # the input's scale survives
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain.children())


def embedding_of(schema: FeatureSchema, **init) -> FeatureEmbedding:
    return FeatureEmbedding(schema, dim=16, dense_hidden=[8], **init)


SIZES = FeatureSchema(sparse=(SparseFeature("small", 500), SparseFeature("big", 50_000)))


def table_weights(embedding: FeatureEmbedding) -> dict[str, torch.Tensor]:
    return {name: bag.weight.detach() for name, bag in embedding.ebc.embedding_bags.items()}


def test_embedding_init_scale_does_not_depend_on_rows() -> None:
    for init, measure in (("normal", torch.std), ("uniform", lambda w: w.abs().max())):
        weights = table_weights(embedding_of(SIZES, init=init, init_scale=0.01))
        for table in ("t_small", "t_big"):
            assert measure(weights[table]).item() == pytest.approx(0.01, rel=0.05), (init, table)
    default = table_weights(embedding_of(SIZES))  # TorchRec's U(±1/√rows) shrinks with the table
    assert default["t_small"].abs().max().item() == pytest.approx(500**-0.5, rel=0.01)
    assert default["t_big"].abs().max().item() == pytest.approx(50_000**-0.5, rel=0.01)


def test_embedding_init_is_configured(tiny: Config, tiny_schema: FeatureSchema) -> None:
    model = build_model("wukong", tiny_schema, with_model(tiny, embedding_init="normal", embedding_init_scale=1e-4))
    for weight in table_weights(model.embedding).values():
        assert weight.std().item() == pytest.approx(1e-4, rel=0.05)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.mlp_norm=bn", "model.mlp_norm must be one of none, batchnorm, layernorm"),
        ("model.head_dropout=1.0", "model.head_dropout must be in [0, 1)"),
        ("model.dcnv2.norm=group", "model.dcnv2.norm must be one of"),
        ("model.linear_init=orthogonal", "model.linear_init must be one of torch, xavier_normal"),
        ("model.fm_projection_init=zeros", "model.fm_projection_init must be one of"),
        ("model.fmb_activation=gelu", "model.fmb_activation must be one of none, relu"),
        ("model.layer_dropout=-0.1", "model.layer_dropout must be in [0, 1)"),
        ("model.layer_norm=batch", "model.layer_norm must be one of dim, layer"),
        ("model.layer_form=wide", "model.layer_form must be one of expand, compact, got 'wide'"),
        ("model.row_split=0", "model.row_split must be > 0, got 0"),
        ("model.row_split=3", "model.row_split=3 does not divide model.embedding_dim=16"),
        ("model.embedding_init=xavier", "model.embedding_init must be one of torchrec, uniform, normal"),
        ("model.embedding_init_scale=0", "model.embedding_init_scale must be > 0"),
    ],
)
def test_bad_model_knobs_are_rejected_by_name(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("tiny", [override])
