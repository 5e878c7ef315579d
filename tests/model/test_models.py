"""Every model behind one interface: shapes, gradients, learning, reading embeddings by key."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedTensor

from wukong.config import MODEL_NAMES, Config, load_config
from wukong.data.batch import random_batch
from wukong.model import RankingModel, build_arch, build_model
from wukong.schema import FeatureSchema, SparseFeature


@pytest.mark.parametrize(("name", "projection"), [(n, "static") for n in MODEL_NAMES] + [("wukong", "attentive")])
def test_gradients_reach_every_parameter(name: str, projection: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    config = dataclasses.replace(tiny.model, fm_projection=projection)
    model = build_model(name, tiny_schema, config)
    batch = random_batch(tiny_schema, 32, torch.Generator().manual_seed(1))
    torch.nn.functional.binary_cross_entropy_with_logits(model(batch.dense, batch.sparse), batch.labels).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"{name}: no gradient reaches {dead}"


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch_size", [1, 5])
def test_shapes_with_odd_number_of_features(name: str, batch_size: int, tiny: Config) -> None:
    # 3 dense features -> 1 dense embedding, plus 4 sparse (one multi-hot): n = 5 rows.
    schema = FeatureSchema(
        dense=("a", "b", "c"),
        sparse=(SparseFeature("u", 50), SparseFeature("i", 40), SparseFeature("g", 9, True), SparseFeature("y", 7)),
    )
    model = build_model(name, schema, tiny.model)
    assert model.embedding.num_features == 5
    batch = random_batch(schema, batch_size)
    assert model.embedding(batch.dense, batch.sparse).shape == (batch_size, 5, tiny.model.embedding_dim)
    assert model(batch.dense, batch.sparse).shape == (batch_size,)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sparse_only_schema(name: str, tiny: Config) -> None:
    schema = FeatureSchema(sparse=(SparseFeature("u", 10), SparseFeature("i", 10), SparseFeature("j", 10)))
    model = build_model(name, schema, tiny.model)
    batch = random_batch(schema, 4)
    assert model(batch.dense, batch.sparse).shape == (4,)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_few_steps_lower_the_loss(name: str, tiny: Config, tiny_schema: FeatureSchema) -> None:
    generator = torch.Generator().manual_seed(2)
    batch = random_batch(tiny_schema, 256, generator)
    # A learnable target: an interaction of a dense feature and a sparse id.
    cat0 = batch.sparse["cat_0"].values()
    batch.labels = ((batch.dense[:, 0] > 0.5) ^ (cat0 % 2 == 1)).float()
    model = build_model(name, tiny_schema, tiny.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(model(batch.dense, batch.sparse), batch.labels)

    first = loss().item()
    for _ in range(40):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    last = loss().item()
    assert last < 0.7 * first, f"{name}: loss {first:.3f} -> {last:.3f}"


class _PermutedOutput(torch.nn.Module):
    """Wraps an EmbeddingBagCollection and reverses the column order of its output, as a sharding plan may."""

    def __init__(self, ebc: torch.nn.Module) -> None:
        super().__init__()
        self.inner = ebc

    def forward(self, features):
        kt = self.inner(features)
        keys = list(reversed(kt.keys()))
        values = kt.to_dict()
        return KeyedTensor.from_tensor_list(keys, [values[k] for k in keys])


def test_embeddings_are_read_by_key_not_position(tiny: Config, tiny_schema: FeatureSchema) -> None:
    model = build_model("wukong", tiny_schema, tiny.model)
    batch = random_batch(tiny_schema, 8)
    expected = model.embedding(batch.dense, batch.sparse)
    model.embedding.ebc = _PermutedOutput(model.embedding.ebc)
    torch.testing.assert_close(model.embedding(batch.dense, batch.sparse), expected)


def test_build_by_name_and_unknown_name(tiny: Config, tiny_schema: FeatureSchema) -> None:
    models = {name: build_model(name, tiny_schema, tiny.model) for name in MODEL_NAMES}
    assert all(isinstance(m, RankingModel) and m.name == n for n, m in models.items())
    assert len({type(m.arch) for m in models.values()}) == len(MODEL_NAMES)
    with pytest.raises(ValueError, match="unknown model 'xdeepfm'; choose one of: wukong, dlrm"):
        build_arch("xdeepfm", 10, tiny.model)


def test_parameter_counts_split_tables_from_dense(tiny: Config, tiny_schema: FeatureSchema) -> None:
    model = build_model("dlrm", tiny_schema, tiny.model)
    counts = model.parameter_counts()
    assert counts["sparse"] == sum(f.cardinality for f in tiny_schema.sparse) * tiny.model.embedding_dim
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    # Built on the meta device, the same model costs no memory and has the same counts.
    assert build_model("dlrm", tiny_schema, tiny.model, device="meta").parameter_counts() == counts


def test_default_preset_builds_on_meta() -> None:
    cfg = load_config("default")
    model = build_model("wukong", cfg.data.synthetic_schema(), cfg.model, device="meta")
    assert all(p.is_meta for p in model.parameters())


@torch.no_grad()
def _materialize_like_torchrec(module: torch.nn.Module) -> None:
    """What DistributedModelParallel does to a meta-device model: allocate each module's own
    parameters and buffers, then call its reset_parameters(). Allocation fills NaN (or -1 for
    integer buffers), so a module that cannot re-initialise itself leaves garbage behind."""
    for sub in module.modules():
        own = [n for n, p in sub._parameters.items() if p is not None and p.is_meta]
        for name in own:
            sub._parameters[name] = torch.nn.Parameter(torch.full(sub._parameters[name].shape, float("nan")))
        for name, buffer in sub._buffers.items():
            if buffer is not None and buffer.is_meta:
                fill = float("nan") if buffer.is_floating_point() else -1
                sub._buffers[name] = torch.full(buffer.shape, fill, dtype=buffer.dtype)
        if own:
            assert hasattr(sub, "reset_parameters"), f"{type(sub).__name__} cannot be initialised from meta"
            sub.reset_parameters()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_meta_built_archs_initialise_like_real_ones(name: str, tiny: Config) -> None:
    config = dataclasses.replace(tiny.model, fm_projection="attentive")
    with torch.device("meta"):
        arch = build_arch(name, 7, config)
    _materialize_like_torchrec(arch)
    assert all(torch.isfinite(p).all() for p in arch.parameters())
    x = torch.randn(4, 7, config.embedding_dim)
    assert torch.isfinite(arch(x)).all()
    # Only the state dict defines the module: a real build with the same weights computes the same.
    real = build_arch(name, 7, config)
    real.load_state_dict(arch.state_dict())
    torch.testing.assert_close(arch(x), real(x))
