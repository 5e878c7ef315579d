"""The feature embedding layer shared by every model: TorchRec tables for sparse features, an MLP for dense.

This is the only model module that imports TorchRec; the interaction archs work on its output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from wukong.model.flops import FlopCount, count_flops
from wukong.model.inference import dense_feature_mlp, table_name
from wukong.schema import FeatureSchema


def table_init(init: str, scale: float) -> dict[str, float | Callable[[torch.Tensor], torch.Tensor]]:
    r"""``EmbeddingBagConfig`` settings that initialise a table by ``init``, whatever its rows:

    - ``torchrec``: nothing set, TorchRec's default ``U(±1/√rows)`` (shrinks as tables grow);
    - ``uniform``: ``U(±scale)``, as ``weight_init_min/max`` (read by FBGEMM's sharded kernels and by
      TorchRec's default ``init_fn``);
    - ``normal``: ``N(0, scale²)``, as ``init_fn``. Sharded modules apply ``init_fn`` after building
      their kernels, to each rank's local shard, and broadcast replicated (data-parallel) tables
      from rank 0, so it holds in every plan.
    """
    if init == "torchrec":
        return {}
    if init == "uniform":
        return {"weight_init_min": -scale, "weight_init_max": scale}
    if init == "normal":
        return {"init_fn": partial(torch.nn.init.normal_, mean=0.0, std=scale)}
    raise ValueError(f"embedding init must be torchrec, uniform or normal, got {init!r}")


def pooled_rows(pooled: KeyedTensor, keys: Sequence[str], dim: int) -> torch.Tensor:
    """The pooled embeddings of ``keys`` as rows ``(B, len(keys), dim)``, in the order of ``keys``.

    When the collection's output already holds exactly ``keys`` in that order (an unsharded
    collection, and most plans) its ``(B, len(keys)·dim)`` values are viewed as rows, with no copy
    forward or backward; otherwise the rows are gathered by key. A leaf of ``torch.fx`` tracing
    (TorchRec's train pipeline traces the model), since it branches on the keys.
    """
    if list(pooled.keys()) == list(keys):
        return pooled.values().reshape(-1, len(keys), dim)
    by_key = pooled.to_dict()
    return torch.stack([by_key[key] for key in keys], dim=1)


torch.fx.wrap("pooled_rows")


class FeatureEmbedding(nn.Module):
    r"""Maps one example's features to the embedding matrix ``X0 ∈ R^{n×d}``.

    .. math::
        X_0 = \mathrm{concat}\big(\mathrm{reshape}_{m\times d}(\mathrm{MLP}(x_{\text{dense}})),\
              [\textstyle\sum_{j \in s_f} E_f[j]]_{f \in \text{sparse}}\big)

    Each sparse feature f has its own table ``E_f`` (``cardinality × d``) in a TorchRec
    :class:`EmbeddingBagCollection`; a multi-hot feature's ids are sum-pooled. The dense features go
    through an MLP to ``m = num_dense_embeddings`` rows. Pooled embeddings are read **by feature
    key**, never by position, so the row order of X0 is the schema's whatever the sharding plan
    (:func:`pooled_rows`).

    Args:
        schema: the features.
        dim: d.
        dense_hidden: hidden widths of the dense MLP (it ends in a linear map to ``m·d``).
        num_dense_embeddings: m (ignored when the schema has no dense feature).
        device: where to allocate the tables (``"meta"`` to shard later with TorchRec).
        init, init_scale: how the tables are initialised (see :func:`table_init`).
        dense_dropout, dense_norm: regularisation of the dense MLP's hidden layers (see
            :class:`~wukong.model.mlp.MLP`).

    Shapes:
        ``dense (B, num_dense)``, ``sparse`` KJT with the schema's keys ``→ (B, n, d)`` with
        ``n = m + num_sparse``.

    Example::

        emb = FeatureEmbedding(schema, dim=16, dense_hidden=[32], num_dense_embeddings=1)
        emb(dense, kjt).shape  # torch.Size([B, 1 + len(schema.sparse), 16])
    """

    def __init__(
        self,
        schema: FeatureSchema,
        dim: int,
        dense_hidden: Sequence[int],
        num_dense_embeddings: int = 1,
        device: torch.device | str | None = None,
        init: str = "torchrec",
        init_scale: float = 1e-4,
        dense_dropout: float = 0.0,
        dense_norm: str = "none",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.sparse_keys = schema.sparse_names
        self.num_dense_embeddings = num_dense_embeddings if schema.dense else 0
        self.num_features = schema.num_features(num_dense_embeddings)
        self.dense_arch = dense_feature_mlp(
            len(schema.dense), dim, dense_hidden, self.num_dense_embeddings, dense_dropout, dense_norm
        )
        initialisation = table_init(init, init_scale)
        self.ebc = (
            EmbeddingBagCollection(
                tables=[
                    EmbeddingBagConfig(
                        name=table_name(f.name),
                        embedding_dim=dim,
                        num_embeddings=f.cardinality,
                        feature_names=[f.name],
                        pooling=PoolingType.SUM,
                        **initialisation,
                    )
                    for f in schema.sparse
                ],
                device=torch.device(device) if device is not None else None,
            )
            if schema.sparse
            else None
        )

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor | None) -> torch.Tensor:
        rows: list[torch.Tensor] = []
        if self.dense_arch is not None:
            rows.append(self.dense_arch(dense).view(-1, self.num_dense_embeddings, self.dim))
        if self.ebc is not None:
            if sparse is None:
                raise ValueError(f"sparse features {self.sparse_keys} are required")
            rows.append(pooled_rows(self.ebc(sparse), self.sparse_keys, self.dim))
        return torch.cat(rows, dim=1)

    def flops(self) -> FlopCount:
        """The dense MLP; look-ups and pooling are not matrix products."""
        return count_flops(self.dense_arch) if self.dense_arch is not None else FlopCount(0)
