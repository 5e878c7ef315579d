"""DLRM's interaction (Naumov et al. 2019, arXiv 1906.00091) over the shared embedding layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wukong.model.flops import FlopCount, count_flops, matmul_flops
from wukong.model.mlp import MLP


class DLRMArch(nn.Module):
    r"""Dot interaction then a top MLP.

    .. math::
        Z = X X^\top,\qquad
        \hat y = \mathrm{MLP}\big(\mathrm{concat}(\mathrm{flatten}(X_{\text{dense}}),\ \{Z_{ij}\}_{i<j})\big)

    ``X_dense`` are the first ``num_dense_rows`` rows of X (the dense-feature embeddings, DLRM's
    bottom-MLP output); ``{Z_ij}_{i<j}`` are the ``n(n-1)/2`` pairwise dot products.

    Args:
        num_features: n.
        dim: d.
        top_hidden: hidden widths of the top MLP (it ends in a linear map to 1).
        num_dense_rows: how many leading rows of X are passed through as they are.
        dropout, norm: regularisation of the top MLP's hidden layers (see :class:`~wukong.model.mlp.MLP`).

    Shapes:
        ``(B, n, d) → (B,)`` logits

    Example::

        arch = DLRMArch(num_features=27, dim=16, top_hidden=[64], num_dense_rows=1)
        arch(torch.randn(4, 27, 16)).shape  # torch.Size([4])
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        top_hidden: Sequence[int],
        num_dense_rows: int = 1,
        dropout: float = 0.0,
        norm: str = "none",
    ) -> None:
        super().__init__()
        self.num_features, self.dim, self.num_dense_rows = num_features, dim, num_dense_rows
        num_pairs = num_features * (num_features - 1) // 2
        self.top = MLP(num_dense_rows * dim + num_pairs, top_hidden, out_features=1, dropout=dropout, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.bmm(x, x.transpose(1, 2))
        # Built here, not kept as a buffer: a model materialised from the meta device (as TorchRec does)
        # gets every non-persistent buffer uninitialised.
        rows, cols = torch.triu_indices(self.num_features, self.num_features, offset=1, device=x.device)
        pairs = z[:, rows, cols]
        return self.top(torch.cat([x[:, : self.num_dense_rows].flatten(1), pairs], dim=1)).squeeze(-1)

    def flops(self) -> FlopCount:
        """``2·n²·d`` (all dot products, as computed) + top MLP."""
        return FlopCount(matmul_flops(self.num_features, self.dim, self.num_features)) + count_flops(self.top)
