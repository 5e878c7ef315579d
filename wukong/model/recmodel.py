"""A complete ranking model: the shared embedding layer followed by one interaction arch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from wukong.model.flops import FlopCount, count_flops

if TYPE_CHECKING:
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor


class RankingModel(nn.Module):
    r"""``logit = arch(embedding(dense, sparse))``: every model here has this shape and interface.

    Args:
        embedding: maps features to ``(B, n, d)`` (:class:`~wukong.model.embedding.FeatureEmbedding`).
        arch: maps ``(B, n, d)`` to logits ``(B,)`` (Wukong or a baseline).
        name: the model's name in comparisons.

    Shapes:
        ``dense (B, num_dense)``, ``sparse`` KJT ``→ (B,)`` logits (apply ``sigmoid`` for CTR).
    """

    def __init__(self, embedding: nn.Module, arch: nn.Module, name: str) -> None:
        super().__init__()
        self.embedding = embedding
        self.arch = arch
        self.name = name

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor | None) -> torch.Tensor:
        return self.arch(self.embedding(dense, sparse))

    def flops(self) -> FlopCount:
        return count_flops(self.embedding) + count_flops(self.arch)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the embedding tables (``sparse``), of everything else (``dense``) and ``total``."""
        sparse = sum(p.numel() for name, p in self.named_parameters() if name.startswith("embedding.ebc."))
        total = sum(p.numel() for p in self.parameters())
        return {"sparse": sparse, "dense": total - sparse, "total": total}
