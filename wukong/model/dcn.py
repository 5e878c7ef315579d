"""DCNv2 (Wang et al. 2021, arXiv 2008.13535), stacked variant, over the shared embedding layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wukong.model.flops import FlopCount, count_flops, sum_flops
from wukong.model.init import Linear
from wukong.model.mlp import MLP


class LowRankCrossNet(nn.Module):
    r"""Low-rank cross network: explicit bounded-degree feature crosses.

    .. math::
        x_{l+1} = x_0 \odot \big(U_l (V_l x_l) + b_l\big) + x_l,
        \qquad U_l \in \mathbb{R}^{D\times r},\ V_l \in \mathbb{R}^{r\times D}

    Layer l holds crosses of degree up to l+1.

    Args:
        in_features: D.
        num_layers: number of cross layers.
        rank: r.

    Shapes:
        ``(B, D) → (B, D)``

    Example::

        net = LowRankCrossNet(in_features=64, num_layers=3, rank=8)
        net(torch.randn(4, 64)).shape  # torch.Size([4, 64])
    """

    def __init__(self, in_features: int, num_layers: int, rank: int) -> None:
        super().__init__()
        self.down = nn.ModuleList(Linear(in_features, rank, bias=False) for _ in range(num_layers))
        self.up = nn.ModuleList(Linear(rank, in_features) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for down, up in zip(self.down, self.up):
            x = x0 * up(down(x)) + x
        return x

    def flops(self) -> FlopCount:
        """``4·D·r`` per layer."""
        return sum_flops(count_flops(down) + count_flops(up) for down, up in zip(self.down, self.up))


class DCNv2Arch(nn.Module):
    r"""Cross network on ``flatten(X)`` followed by a deep MLP to one logit (the "stacked" DCNv2).

    .. math::
        \hat y = \mathrm{MLP}\big(\mathrm{CrossNet}(\mathrm{flatten}(X))\big)

    Args:
        num_features: n.
        dim: d (the cross network works on ``D = n·d``).
        num_cross_layers, rank: see :class:`LowRankCrossNet`.
        deep_hidden: hidden widths of the deep MLP (it ends in a linear map to 1).
        dropout, norm: regularisation of the deep MLP's hidden layers (see :class:`~wukong.model.mlp.MLP`).

    Shapes:
        ``(B, n, d) → (B,)`` logits

    Example::

        arch = DCNv2Arch(num_features=27, dim=16, num_cross_layers=2, rank=8, deep_hidden=[64])
        arch(torch.randn(4, 27, 16)).shape  # torch.Size([4])
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        num_cross_layers: int,
        rank: int,
        deep_hidden: Sequence[int],
        dropout: float = 0.0,
        norm: str = "none",
    ) -> None:
        super().__init__()
        width = num_features * dim
        self.cross = LowRankCrossNet(width, num_cross_layers, rank)
        self.deep = MLP(width, deep_hidden, out_features=1, dropout=dropout, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deep(self.cross(x.flatten(1))).squeeze(-1)

    def flops(self) -> FlopCount:
        return count_flops(self.cross) + count_flops(self.deep)
