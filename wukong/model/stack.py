"""The Wukong interaction stack and its prediction head (paper, sections 3.3-3.6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wukong.config import LAYER_FORMS, LAYER_NORMS
from wukong.model.blocks import FactorizationMachineBlock, LinearCompressionBlock, StaticProjection
from wukong.model.flops import FlopCount, count_flops, sum_flops
from wukong.model.init import Linear
from wukong.model.mlp import MLP


class WukongLayerBase(nn.Module):
    """What both forms of a Wukong layer share: an FMB, dropout on the interaction branch, a LayerNorm.

    A form sets :attr:`fmb_output_dim` (the width of each FMB output row; None: d) and builds its
    linear branches in :meth:`build_branches`, which returns the number of rows the layer outputs. Both
    forms take the same arguments (see :class:`WukongLayer`), so :class:`WukongArch` picks one by name.
    """

    fmb_output_dim: int | None = None

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
        if norm not in LAYER_NORMS:
            raise ValueError(f"layer norm must be one of {', '.join(LAYER_NORMS)}, got {norm!r}")
        self.num_inputs, self.dim = num_inputs, dim
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
            output_dim=self.fmb_output_dim,
        )
        self.num_outputs = self.build_branches(num_fmb, num_lcb)
        self.dropout = nn.Dropout(dropout)
        self.norm: nn.Module = (
            nn.Identity() if norm == "none" else nn.LayerNorm((dim,) if norm == "dim" else (self.num_outputs, dim))
        )

    def build_branches(self, num_fmb: int, num_lcb: int) -> int:
        """Create the form's linear modules; return the rows of the layer's output."""
        raise NotImplementedError


class WukongLayer(WukongLayerBase):
    r"""One Wukong layer (``layer_form="expand"``, the paper's): an FMB and an LCB side by side, a
    residual and a LayerNorm.

    .. math::
        X_{i+1} = \mathrm{LN}\big(\mathrm{concat}(\mathrm{FMB}_i(X_i), \mathrm{LCB}_i(X_i))
                  + \mathrm{res}(X_i)\big)

    where ``res`` is the identity when ``n_i = nF + nL`` and otherwise a linear compression
    ``W_r X_i`` (``W_r ∈ R^{(nF+nL)×n_i}``) so that the shapes match. LayerNorm is over d (each row
    normalised on its own, ``norm="dim"``) or over all ``(nF+nL)·d`` values of the example
    (``norm="layer"``), or left out (``norm="none"``: the residual stream keeps the embeddings' scale,
    which can carry an id's strength, e.g. a popular item's, that a per-row LayerNorm removes). With
    ``dropout`` p > 0 the interaction branch is dropped out in training before the sum,
    ``X_{i+1} = LN(Dropout_p(concat(FMB, LCB)) + res(X_i))``, the residual dropout of transformer
    blocks (FuxiCTR's WuKong uses p = 0.2 there).

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
        norm: ``"dim"`` or ``"layer"``, what the LayerNorm normalises over; ``"none"``: no LayerNorm.

    Shapes:
        ``(B, n_i, d) → (B, nF + nL, d)``

    Example::

        layer = WukongLayer(num_inputs=27, dim=16, num_fmb=8, num_lcb=8, rank=4, fmb_hidden=[64])
        layer(torch.randn(4, 27, 16)).shape  # torch.Size([4, 16, 16])
    """

    def build_branches(self, num_fmb: int, num_lcb: int) -> int:
        rows = num_fmb + num_lcb
        self.lcb = LinearCompressionBlock(self.num_inputs, num_lcb)
        self.residual: nn.Module = (
            nn.Identity() if self.num_inputs == rows else LinearCompressionBlock(self.num_inputs, rows)
        )
        return rows

    def row_maps(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(Yᵀ X, W_L X, res(X))``: every linear map of X's rows the layer uses, in one product.

        Each maps n rows to a few. Stacked into one ``(k + nL + nF + nL) × n`` matrix M (``Yᵀ`` for
        a static Y only, ``W_r`` for a compressed residual only) and broadcast over the batch as a
        stride-0 view, they cost one batched product ``M X`` whose output and gradients keep X's
        ``(B, rows, d)`` layout, where an ``einsum`` per map copied X into an ``(n, B·d)`` block and
        its gradient back, forward and backward, for each of up to three maps (Wukong's training
        step at 1 MFLOP/example: 1.2-1.3x faster with the same values; docs/benchmarks.md).
        ``Yᵀ X`` is None for an attentive Y (computed per example)."""
        static = isinstance(self.fmb.projection, StaticProjection)
        compressed = isinstance(self.residual, LinearCompressionBlock)
        maps = [self.fmb.projection.weight.t()] if static else []
        maps.append(self.lcb.weight)
        if compressed:
            maps.append(self.residual.weight)
        stacked = torch.cat(maps)
        mixed = torch.bmm(stacked.expand(x.shape[0], *stacked.shape), x).split([m.shape[0] for m in maps], dim=1)
        projected = mixed[0] if static else None
        return projected, mixed[int(static)], mixed[-1] if compressed else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected, lcb, residual = self.row_maps(x)
        interactions = self.dropout(torch.cat([self.fmb(x, projected), lcb], dim=1))
        return self.norm(interactions + residual)

    def flops(self) -> FlopCount:
        """FMB + ``2·nL·n·d`` (LCB) + ``2·(nF+nL)·n·d`` when the residual is compressed."""
        count = count_flops(self.fmb) + self.lcb.flops_for_dim(self.dim)
        if isinstance(self.residual, LinearCompressionBlock):
            count = count + self.residual.flops_for_dim(self.dim)
        return count


class CompactWukongLayer(WukongLayerBase):
    r"""A Wukong layer that keeps its n input rows (``layer_form="compact"``): a bottleneck residual.

    With ``x = flatten(X_i) ∈ R^{n·d}``:

    .. math::
        f = \mathrm{FMB}_i(X_i) \in \mathbb{R}^{n_F}, \qquad
        l = W_L\,x + b_L \in \mathbb{R}^{n_L}, \qquad
        z = \mathrm{Dropout}_p(\mathrm{concat}(f, l))

        X_{i+1} = \mathrm{reshape}_{n\times d}\big(\mathrm{LN}(x + W_T\,z + b_T)\big),
        \qquad W_T \in \mathbb{R}^{(n\cdot d)\times(n_F+n_L)}

    The FMB is the paper's (the same ``X (Xᵀ Y)`` interactions, LayerNorm and MLP) except that its
    MLP ends in nF scalars instead of nF rows of d. ``l`` is a linear map of all ``n·d`` input values
    (with a bias, as the FMB MLP's last Linear: in eval mode it could be folded into ``b_T``, in
    training dropout drops it with its unit). The nF + nL values are a bottleneck, mapped back to the
    ``n·d`` values of the residual stream by ``W_T``. Every layer keeps n rows, so the head's input is
    ``n·d`` whatever the depth. LayerNorm is over d per row (``norm="dim"``) or over all ``n·d``
    values (``norm="layer"``, as FuxiCTR's WuKong, whose layer this form follows), or left out (``"none"``).

    Args: as :class:`WukongLayer` (``num_lcb`` is nL, the width of ``l``).

    Shapes:
        ``(B, n, d) → (B, n, d)``

    Example::

        layer = CompactWukongLayer(num_inputs=27, dim=16, num_fmb=8, num_lcb=8, rank=4, fmb_hidden=[64])
        layer(torch.randn(4, 27, 16)).shape  # torch.Size([4, 27, 16])
    """

    fmb_output_dim = 1

    def build_branches(self, num_fmb: int, num_lcb: int) -> int:
        width = self.num_inputs * self.dim
        self.linear = Linear(width, num_lcb)  # W_L, b_L
        self.transform = Linear(num_fmb + num_lcb, width)  # W_T, b_T
        return self.num_inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        bottleneck = self.dropout(torch.cat([self.fmb(x).flatten(1), self.linear(flat)], dim=1))
        return self.norm((flat + self.transform(bottleneck)).view(-1, self.num_outputs, self.dim))

    def flops(self) -> FlopCount:
        """FMB (its MLP ending in nF) + ``2·n·d·nL`` (``W_L``) + ``2·(nF+nL)·n·d`` (``W_T``)."""
        return count_flops(self.fmb) + count_flops(self.linear) + count_flops(self.transform)


# The layer class of each ``model.layer_form``.
LAYER_CLASSES: dict[str, type[WukongLayerBase]] = {"expand": WukongLayer, "compact": CompactWukongLayer}
assert tuple(LAYER_CLASSES) == LAYER_FORMS


class WukongArch(nn.Module):
    r"""Wukong over embeddings: ``num_layers`` Wukong layers then an MLP to one logit.

    .. math::
        X_{i+1} = \mathrm{WukongLayer}_i(X_i),\ i = 0..l-1;
        \qquad \hat y = \mathrm{MLP}(\mathrm{flatten}(X_l))

    The layers are :class:`WukongLayer` (``layer_form="expand"``: ``X_l`` has nF + nL rows) or
    :class:`CompactWukongLayer` (``"compact"``: every ``X_i`` keeps the n rows of ``X_0``).

    With ``row_split = s > 1`` each input row of width d is first cut into s rows of width d/s
    (the paper's embedding layer gives a feature several embeddings of the shared width, e.g. a
    32-wide one as four rows of 8): ``X_0 ∈ R^{n×d}`` becomes ``R^{(n·s)×(d/s)}``, a view. The
    FMB's dot products then pair every slice of one feature with every slice of another,
    ``(n·s)²`` products of d/s coordinates instead of ``n²`` of d: at ``s = d`` they are the
    products of single coordinates.

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
        layer_form: ``"expand"`` or ``"compact"``, the layer class (see above).
        row_split: s, rows each input row is split into (a divisor of d; 1: none).

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
        layer_form: str = "expand",
        row_split: int = 1,
    ) -> None:
        super().__init__()
        if layer_form not in LAYER_CLASSES:
            raise ValueError(f"layer form must be one of {', '.join(LAYER_CLASSES)}, got {layer_form!r}")
        if row_split < 1 or dim % row_split:
            raise ValueError(f"row_split must be a positive divisor of dim={dim}, got {row_split}")
        self.row_split = row_split
        dim //= row_split
        self.layers = nn.ModuleList()
        rows = num_features * row_split  # each layer's input rows are its predecessor's output rows
        for _ in range(num_layers):
            layer = LAYER_CLASSES[layer_form](
                rows,
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
            self.layers.append(layer)
            rows = layer.num_outputs
        self.head = MLP(rows * dim, head_hidden, out_features=1, dropout=head_dropout, norm=head_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.row_split > 1:  # (B, n, d) -> (B, n·s, d/s), a view of a contiguous x
            x = x.reshape(x.shape[0], x.shape[1] * self.row_split, x.shape[2] // self.row_split)
        for layer in self.layers:
            x = layer(x)
        return self.head(x.flatten(1)).squeeze(-1)

    def flops(self) -> FlopCount:
        return sum_flops(count_flops(layer) for layer in self.layers) + count_flops(self.head)
