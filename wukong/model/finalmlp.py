"""FinalMLP (Mao et al. 2023, arXiv 2304.00902) over the shared embedding layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wukong.model.flops import FlopCount, count_flops, matmul_flops, sum_flops
from wukong.model.mlp import MLP


class FeatureGate(nn.Module):
    r"""Stream-specific feature selection: a gate over the flattened embeddings.

    .. math::
        g = 2\,\sigma\big(\mathrm{MLP}(c)\big) \in (0, 2)^{D},\qquad e' = e \odot g

    ``c`` is a learned context vector (FinalMLP's default when no conditioning feature is named),
    so the gate is the same for every example and is computed once per batch.

    Shapes:
        ``(B, D) → (B, D)``
    """

    def __init__(self, in_features: int, context_dim: int, hidden: int) -> None:
        super().__init__()
        self.context = nn.Parameter(torch.empty(1, context_dim))
        self.mlp = MLP(context_dim, [hidden], out_features=in_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # FinalMLP starts the context at zero; a random start lets the gate MLP's first layer learn
        # from step one (a zero input gives its weights a zero gradient).
        nn.init.normal_(self.context)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return e * (2 * torch.sigmoid(self.mlp(self.context)))

    def flops(self) -> FlopCount:
        return FlopCount(0, per_batch=count_flops(self.mlp).per_example)


class BilinearFusion(nn.Module):
    r"""Multi-head bilinear fusion of the two streams' outputs into one logit.

    The outputs are split into H heads, ``o_1 = [o_{1,1}..o_{1,H}]``, ``o_2`` likewise:

    .. math::
        \hat y = b + \sum_{h=1}^{H} \big( w_{1,h}^\top o_{1,h} + w_{2,h}^\top o_{2,h}
                 + o_{1,h}^\top W_{3,h}\, o_{2,h} \big)

    Shapes:
        ``(B, h1), (B, h2) → (B,)``
    """

    def __init__(self, dim1: int, dim2: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head1, self.head2 = num_heads, dim1 // num_heads, dim2 // num_heads
        self.w1 = nn.Parameter(torch.empty(num_heads, self.head1))
        self.w2 = nn.Parameter(torch.empty(num_heads, self.head2))
        self.w3 = nn.Parameter(torch.empty(num_heads, self.head1, self.head2))
        self.bias = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.w1, self.w2):
            nn.init.uniform_(weight, -(self.head1**-0.5), self.head1**-0.5)
        nn.init.xavier_uniform_(self.w3)
        nn.init.zeros_(self.bias)

    def forward(self, o1: torch.Tensor, o2: torch.Tensor) -> torch.Tensor:
        o1 = o1.view(-1, self.num_heads, self.head1).transpose(0, 1)  # H × B × h1
        o2 = o2.view(-1, self.num_heads, self.head2).transpose(0, 1)  # H × B × h2
        bilinear = (torch.bmm(o1, self.w3) * o2).sum(dim=(0, 2))
        linear = (o1 * self.w1.unsqueeze(1)).sum(dim=(0, 2)) + (o2 * self.w2.unsqueeze(1)).sum(dim=(0, 2))
        return bilinear + linear + self.bias

    def flops(self) -> FlopCount:
        """``2·H·(h1/H)·(h2/H)`` for ``o_1ᵀ W_3`` (the rest is element-wise)."""
        return FlopCount(self.num_heads * matmul_flops(1, self.head1, self.head2))


class FinalMLPArch(nn.Module):
    r"""Two MLP streams on gated copies of ``flatten(X)``, fused bilinearly.

    .. math::
        o_s = \mathrm{MLP}_s\big(\mathrm{Gate}_s(\mathrm{flatten}(X))\big),\ s = 1, 2;
        \qquad \hat y = \mathrm{Fusion}(o_1, o_2)

    Args:
        num_features: n.
        dim: d (the streams see ``D = n·d``).
        stream1_hidden, stream2_hidden: widths of each stream's MLP (ReLU after every layer); the
            last width of each must be divisible by ``num_heads``.
        gate_hidden: hidden width of each gate's MLP.
        num_heads: H of the fusion.
        dropout, norm: regularisation of both streams' layers (see :class:`~wukong.model.mlp.MLP`);
            the gates, computed once per batch from learned contexts, have neither.

    Shapes:
        ``(B, n, d) → (B,)`` logits

    Example::

        arch = FinalMLPArch(num_features=27, dim=16, stream1_hidden=[64], stream2_hidden=[32],
                            gate_hidden=32, num_heads=4)
        arch(torch.randn(4, 27, 16)).shape  # torch.Size([4])
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        stream1_hidden: Sequence[int],
        stream2_hidden: Sequence[int],
        gate_hidden: int,
        num_heads: int,
        dropout: float = 0.0,
        norm: str = "none",
    ) -> None:
        super().__init__()
        width = num_features * dim
        self.gate1 = FeatureGate(width, dim, gate_hidden)
        self.gate2 = FeatureGate(width, dim, gate_hidden)
        self.stream1 = MLP(width, stream1_hidden, dropout=dropout, norm=norm)
        self.stream2 = MLP(width, stream2_hidden, dropout=dropout, norm=norm)
        self.fusion = BilinearFusion(self.stream1.out_features, self.stream2.out_features, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x.flatten(1)
        return self.fusion(self.stream1(self.gate1(e)), self.stream2(self.gate2(e)))

    def flops(self) -> FlopCount:
        return sum_flops(map(count_flops, (self.gate1, self.gate2, self.stream1, self.stream2, self.fusion)))
