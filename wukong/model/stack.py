"""The Wukong interaction stack and its prediction head (paper, sections 3.3-3.6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wukong.model.blocks import FactorizationMachineBlock, LinearCompressionBlock
from wukong.model.flops import FlopCount, count_flops, sum_flops
from wukong.model.mlp import MLP


class WukongLayer(nn.Module):
    r"""One Wukong layer: an FMB and an LCB side by side, a residual and a LayerNorm.

    .. math::
        X_{i+1} = \mathrm{LN}\big(\mathrm{concat}(\mathrm{FMB}_i(X_i), \mathrm{LCB}_i(X_i))
                  + \mathrm{res}(X_i)\big)

    where ``res`` is the identity when ``n_i = nF + nL`` and otherwise a linear compression
    ``W_r X_i`` (``W_r ∈ R^{(nF+nL)×n_i}``) so that the shapes match. LayerNorm is over d (each row
    normalised on its own, ``norm="dim"``) or over all ``(nF+nL)·d`` values of the example
    (``norm="layer"``). With ``dropout`` p > 0 the interaction branch is dropped out in training
    before the sum, ``X_{i+1} = LN(Dropout_p(concat(FMB, LCB)) + res(X_i))``, the residual dropout of
    transformer blocks (FuxiCTR's WuKong uses p = 0.2 there).

    Args:
        num_inputs: n_i, rows of the input.
        dim: d.
        num_fmb: nF, rows from the FMB.
        num_lcb: nL, rows from the LCB.
        rank: k of the FMB's projection.
        fmb_hidden: hidden widths of the FMB's MLP.
        projection, attention_rank, attention_hidden: see :class:`FactorizationMachineBlock`.
        fmb_dropout, fmb_norm, fmb_activation, projection_init: the FMB's ``dropout``, ``norm``,
            ``activation`` and ``projection_init`` (see :class:`FactorizationMachineBlock`).
        dropout: p of the interaction branch's dropout.
        norm: ``"dim"`` or ``"layer"``, what the LayerNorm normalises over.

    Shapes:
        ``(B, n_i, d) → (B, nF + nL, d)``

    Example::

        layer = WukongLayer(num_inputs=27, dim=16, num_fmb=8, num_lcb=8, rank=4, fmb_hidden=[64])
        layer(torch.randn(4, 27, 16)).shape  # torch.Size([4, 16, 16])
    """

    def __init__(
        self,
        num_inputs: int,
        dim: int,
        num_fmb: int,
        num_lcb: int,
        rank: int,
        fmb_hidden: Sequence[int],
        projection: str = "static",
        attention_rank: int = 8,
        attention_hidden: Sequence[int] = (128,),
        fmb_dropout: float = 0.0,
        fmb_norm: str = "none",
        fmb_activation: str = "none",
        projection_init: str = "xavier_uniform",
        dropout: float = 0.0,
        norm: str = "dim",
    ) -> None:
        super().__init__()
        if norm not in ("dim", "layer"):
            raise ValueError(f"layer norm must be 'dim' or 'layer', got {norm!r}")
        self.dim = dim
        self.num_outputs = num_fmb + num_lcb
        self.fmb = FactorizationMachineBlock(
            num_inputs,
            dim,
            num_fmb,
            rank,
            fmb_hidden,
            projection,
            attention_rank,
            attention_hidden,
            dropout=fmb_dropout,
            norm=fmb_norm,
            activation=fmb_activation,
            projection_init=projection_init,
        )
        self.lcb = LinearCompressionBlock(num_inputs, num_lcb)
        self.residual: nn.Module = (
            nn.Identity() if num_inputs == self.num_outputs else LinearCompressionBlock(num_inputs, self.num_outputs)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm((dim,) if norm == "dim" else (self.num_outputs, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        interactions = self.dropout(torch.cat([self.fmb(x), self.lcb(x)], dim=1))
        return self.norm(interactions + self.residual(x))

    def flops(self) -> FlopCount:
        """FMB + ``2·nL·n·d`` (LCB) + ``2·(nF+nL)·n·d`` when the residual is compressed."""
        count = count_flops(self.fmb) + self.lcb.flops_for_dim(self.dim)
        if isinstance(self.residual, LinearCompressionBlock):
            count = count + self.residual.flops_for_dim(self.dim)
        return count


class WukongArch(nn.Module):
    r"""Wukong over embeddings: ``num_layers`` :class:`WukongLayer` then an MLP to one logit.

    .. math::
        X_{i+1} = \mathrm{WukongLayer}_i(X_i),\ i = 0..l-1;
        \qquad \hat y = \mathrm{MLP}(\mathrm{flatten}(X_l))

    Args:
        num_features: n, rows of X0 (dense embeddings + one per sparse feature).
        dim: d.
        num_layers: l.
        num_fmb, num_lcb, rank, fmb_hidden, projection, attention_rank, attention_hidden,
            fmb_dropout, fmb_norm, fmb_activation, projection_init: per-layer settings, see
            :class:`WukongLayer`.
        head_hidden: hidden widths of the final MLP (it ends in a linear map to 1).
        head_dropout, head_norm: regularisation of the head's hidden layers (see
            :class:`~wukong.model.mlp.MLP`).
        layer_dropout, layer_norm: each layer's ``dropout`` and ``norm`` (see :class:`WukongLayer`).

    Shapes:
        ``(B, n, d) → (B,)`` logits

    Example::

        arch = WukongArch(num_features=27, dim=16, num_layers=2, num_fmb=8, num_lcb=8, rank=4,
                          fmb_hidden=[64], head_hidden=[64])
        arch(torch.randn(4, 27, 16)).shape  # torch.Size([4])
    """

    def __init__(
        self,
        num_features: int,
        dim: int,
        num_layers: int,
        num_fmb: int,
        num_lcb: int,
        rank: int,
        fmb_hidden: Sequence[int],
        head_hidden: Sequence[int],
        projection: str = "static",
        attention_rank: int = 8,
        attention_hidden: Sequence[int] = (128,),
        fmb_dropout: float = 0.0,
        fmb_norm: str = "none",
        fmb_activation: str = "none",
        projection_init: str = "xavier_uniform",
        head_dropout: float = 0.0,
        head_norm: str = "none",
        layer_dropout: float = 0.0,
        layer_norm: str = "dim",
    ) -> None:
        super().__init__()
        widths = [num_features] + [num_fmb + num_lcb] * num_layers
        self.layers = nn.ModuleList(
            WukongLayer(
                n,
                dim,
                num_fmb,
                num_lcb,
                rank,
                fmb_hidden,
                projection,
                attention_rank,
                attention_hidden,
                fmb_dropout=fmb_dropout,
                fmb_norm=fmb_norm,
                fmb_activation=fmb_activation,
                projection_init=projection_init,
                dropout=layer_dropout,
                norm=layer_norm,
            )
            for n in widths[:-1]
        )
        self.head = MLP(widths[-1] * dim, head_hidden, out_features=1, dropout=head_dropout, norm=head_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x.flatten(1)).squeeze(-1)

    def flops(self) -> FlopCount:
        return sum_flops(count_flops(layer) for layer in self.layers) + count_flops(self.head)
