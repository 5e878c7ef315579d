r"""A trained ranking model in plain torch, for inference and ``torch.export``: no TorchRec anywhere.

Training keeps the sparse features in a TorchRec ``EmbeddingBagCollection`` (sharded over ranks);
its unsharded state dict (``model.pt``) holds one ``embedding.ebc.embedding_bags.<table>.weight``
per feature. :class:`PlainFeatureEmbedding` has exactly that parameter layout, in ``nn.EmbeddingBag``
modules, so ``model.pt`` loads into :class:`InferenceModel` as it is (strictly: every key is used).

:class:`InferenceModel` takes the prepared inputs as plain tensors (the batch dimension ``B`` is
dynamic under ``torch.export``):

- ``dense (B, D)`` float32: the transformed dense features (what ``wukong data prepare`` writes);
- ``single (B, S)`` int64: the ids of the single-hot sparse features, in schema order;
- per multi-hot feature, in schema order, ``values (N_f,)`` int64 and ``lengths (B,)`` int64 (row i
  holds ``values[o_i : o_i + lengths[i]]`` with ``o_i = Σ_{j<i} lengths[j]``; ``N_f = Σ lengths``);

and returns ``p = σ(arch(X_0)) ∈ (0, 1)^B``, with ``X_0`` built as in training:

.. math::
    X_0 = \mathrm{concat}\big(\mathrm{reshape}_{m\times d}(\mathrm{MLP}(x_{\text{dense}})),\
          [\textstyle\sum_{j \in s_f} E_f[j]]_{f \in \text{sparse}}\big)

A single-hot feature is a look-up ``E_f[id]``; a multi-hot one a sum over its ids (an empty list
gives the zero vector), as TorchRec's ``PoolingType.SUM`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from wukong.config import ModelConfig
from wukong.model.build import build_arch
from wukong.model.mlp import MLP
from wukong.schema import FeatureSchema


def table_name(feature: str) -> str:
    """The embedding table of a sparse feature (one table per feature)."""
    return f"t_{feature}"


def dense_feature_mlp(
    num_dense: int, dim: int, hidden: Sequence[int], num_rows: int, dropout: float = 0.0, norm: str = "none"
) -> MLP | None:
    """The embedding layer's dense-feature MLP, ``num_dense → num_rows·d`` (None without dense features)."""
    if not num_dense:
        return None
    return MLP(num_dense, hidden, out_features=num_rows * dim, dropout=dropout, norm=norm)


class PlainEmbeddingBags(nn.Module):
    """One ``nn.EmbeddingBag`` (sum) per table under ``embedding_bags``: TorchRec's unsharded layout."""

    def __init__(self, schema: FeatureSchema, dim: int) -> None:
        super().__init__()
        self.embedding_bags = nn.ModuleDict(
            {table_name(f.name): nn.EmbeddingBag(f.cardinality, dim, mode="sum") for f in schema.sparse}
        )


class PlainFeatureEmbedding(nn.Module):
    """The training embedding layer's parameters (``dense_arch``, ``ebc.embedding_bags``) in plain torch."""

    def __init__(self, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.dim = config.embedding_dim
        self.num_dense_embeddings = config.num_dense_embeddings if schema.dense else 0
        self.num_features = schema.num_features(config.num_dense_embeddings)
        self.dense_arch = dense_feature_mlp(
            len(schema.dense),
            config.embedding_dim,
            config.dense_mlp,
            config.num_dense_embeddings,
            config.dense_dropout,
            config.dense_norm,
        )
        self.ebc = PlainEmbeddingBags(schema, config.embedding_dim) if schema.sparse else None
        self.single = [table_name(f.name) for f in schema.sparse if not f.multi_hot]
        self.multi = [table_name(f.name) for f in schema.sparse if f.multi_hot]
        self.order = [table_name(f.name) for f in schema.sparse]  # the rows of X0 after the dense ones

    def forward(self, dense: torch.Tensor, single: torch.Tensor, jagged: Sequence[torch.Tensor]) -> torch.Tensor:
        rows: list[torch.Tensor] = []
        if self.dense_arch is not None:
            rows.append(self.dense_arch(dense).view(-1, self.num_dense_embeddings, self.dim))
        if self.ebc is not None:
            bags = self.ebc.embedding_bags
            weights = {name: bags[name].weight for name in self.order}
            pooled = {name: nn.functional.embedding(single[:, j], weights[name]) for j, name in enumerate(self.single)}
            for k, name in enumerate(self.multi):
                values, lengths = jagged[2 * k], jagged[2 * k + 1]
                offsets = torch.cumsum(lengths, 0) - lengths
                pooled[name] = nn.functional.embedding_bag(values, weights[name], offsets, mode="sum")
            rows.append(torch.stack([pooled[name] for name in self.order], dim=1))
        return torch.cat(rows, dim=1)


class InferenceModel(nn.Module):
    """``probability = σ(arch(embedding(dense, single, *jagged)))``, plain torch (see the module docstring).

    Example::

        model = InferenceModel("wukong", schema, config.model)
        model.load_state_dict(torch.load("model.pt"))      # the state dict training writes
        p = model.eval()(dense, single, genres_values, genres_lengths)   # (B,)
    """

    def __init__(self, name: str, schema: FeatureSchema, config: ModelConfig) -> None:
        super().__init__()
        self.schema = schema
        self.embedding = PlainFeatureEmbedding(schema, config)
        self.arch = build_arch(name, self.embedding.num_features, config, self.embedding.num_dense_embeddings)

    def forward(self, dense: torch.Tensor, single: torch.Tensor, *jagged: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.arch(self.embedding(dense, single, jagged)).float())

    def input_spec(self) -> list[dict[str, Any]]:
        """The positional inputs in order: name, dtype, shape (``batch``: B; ``ids_k``: the k-th multi-hot
        feature's id count) and the features each holds."""
        single = [f.name for f in self.schema.sparse if not f.multi_hot]
        spec = [
            {
                "name": "dense",
                "dtype": "float32",
                "shape": ["batch", len(self.schema.dense)],
                "features": list(self.schema.dense),
            },
            {"name": "single", "dtype": "int64", "shape": ["batch", len(single)], "features": single},
        ]
        for k, feature in enumerate(f for f in self.schema.sparse if f.multi_hot):
            spec += [
                {"name": f"{feature.name}.values", "dtype": "int64", "shape": [f"ids_{k}"], "features": [feature.name]},
                {"name": f"{feature.name}.lengths", "dtype": "int64", "shape": ["batch"], "features": [feature.name]},
            ]
        return spec

    def example_inputs(self, batch: int = 4) -> tuple[torch.Tensor, ...]:
        """Valid inputs of ``batch`` rows (multi-hot rows holding 0, 1, 2... ids), to trace with."""
        single = [f for f in self.schema.sparse if not f.multi_hot]
        multi = [f for f in self.schema.sparse if f.multi_hot]
        jagged: list[torch.Tensor] = []
        for feature in multi:
            lengths = torch.arange(batch, dtype=torch.int64) % 3
            jagged += [torch.arange(int(lengths.sum()), dtype=torch.int64) % feature.cardinality, lengths]
        ids = torch.stack([torch.arange(batch) % f.cardinality for f in single], 1) if single else None
        return (
            torch.rand(batch, len(self.schema.dense)),
            ids if ids is not None else torch.zeros(batch, 0, dtype=torch.int64),
            *jagged,
        )

    def dynamic_shapes(self) -> tuple[Any, ...]:
        """``torch.export`` dynamic shapes of :meth:`example_inputs` (the jagged inputs grouped, as
        ``*jagged`` receives them, absent without multi-hot features): the named sizes of
        :meth:`input_spec`, B shared by every input."""
        dims: dict[str, Any] = {}
        for spec in self.input_spec():
            name = spec["shape"][0]
            dims.setdefault(name, torch.export.Dim(name, min=1 if name == "batch" else 0))
        shapes = [{0: dims[spec["shape"][0]]} for spec in self.input_spec()]
        return (shapes[0], shapes[1], tuple(shapes[2:])) if shapes[2:] else (shapes[0], shapes[1])
