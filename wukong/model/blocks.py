"""The two blocks of a Wukong layer (paper, sections 3.3-3.4) and the FM projections they use.

All blocks take and return embedding matrices ``X ∈ R^{B×n×d}`` (batch, rows, embedding dim) and
import nothing from TorchRec, so they run wherever torch runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wukong.config import FMB_ACTIVATIONS, PROJECTION_INITS
from wukong.model.flops import FlopCount, count_flops, matmul_flops
from wukong.model.init import LinearInit, init_linear_
from wukong.model.mlp import MLP


class LinearCompressionBlock(nn.Module, LinearInit):
    r"""Linear Compression Block (LCB): recombines the n embeddings into m new ones.

    .. math::
        \mathrm{LCB}(X) = W X,\qquad W \in \mathbb{R}^{m\times n},\ X \in \mathbb{R}^{n\times d}

    Each output row is a learned linear combination of input rows, so LCB keeps the interaction
    order of its input (it carries lower-order interactions up the stack).

    Args:
        num_inputs: n, rows of the input.
        num_outputs: m, rows of the output.

    Shapes:
        ``(B, n, d) → (B, m, d)``

    Example::

        lcb = LinearCompressionBlock(num_inputs=30, num_outputs=8)
        lcb(torch.randn(4, 30, 16)).shape  # torch.Size([4, 8, 16])
    """

    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        self.num_inputs = num_inputs
        self.num_outputs = num_outputs
        self.weight = nn.Parameter(torch.empty(num_outputs, num_inputs))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The ``linear_init`` scheme, nn.Linear's by default (also called when a meta-device model is
        materialised); W is a linear map from n rows to m, so fan-in n and fan-out m."""
        init_linear_(self.weight, None, self.linear_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oi,bid->bod", self.weight, x)

    def flops_for_dim(self, dim: int) -> FlopCount:
        """``2·m·n·d`` per example."""
        return FlopCount(matmul_flops(self.num_outputs, self.num_inputs, dim))


class StaticProjection(nn.Module):
    r"""A learned FM projection ``Y ∈ R^{n×k}`` shared by every example.

    Args:
        num_inputs: n.
        rank: k.
        init: ``"xavier_uniform"`` (``U(±√(6/(n+k)))``), ``"xavier_normal"`` (``N(0, 2/(n+k))``) or
            ``"normal"`` (``N(0, 1)``, as FuxiCTR's WuKong draws it).

    Shapes:
        ``(B, n, d) → (n, k)`` (broadcast over the batch)
    """

    def __init__(self, num_inputs: int, rank: int, init: str = "xavier_uniform") -> None:
        super().__init__()
        if init not in PROJECTION_INITS:
            raise ValueError(f"projection init must be one of {', '.join(PROJECTION_INITS)}, got {init!r}")
        self.init = init
        self.weight = nn.Parameter(torch.empty(num_inputs, rank))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "normal":
            nn.init.normal_(self.weight)
        elif self.init == "xavier_normal":
            nn.init.xavier_normal_(self.weight)
        else:
            nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight

    def flops_for_dim(self, dim: int) -> FlopCount:
        return FlopCount(0)


class AttentiveProjection(nn.Module):
    r"""An FM projection computed per example from the input ("attentive" Y, paper section 3.4).

    .. math::
        Y(X) = \mathrm{reshape}_{n\times k}\big(\mathrm{MLP}(\mathrm{flatten}(W_c X))\big),
        \qquad W_c \in \mathbb{R}^{c\times n}

    The input is first linearly compressed to ``c`` rows (an LCB), then a small MLP maps the
    flattened ``c·d`` values to the ``n·k`` entries of Y. Unlike a static Y, which rows of
    ``X Xᵀ`` are summarised (and with which weights) then depends on the example.

    Args:
        num_inputs: n.
        dim: d.
        rank: k, columns of Y.
        compressed_rows: c, rows kept by the compression.
        hidden: hidden widths of the MLP.

    Shapes:
        ``(B, n, d) → (B, n, k)``

    Example::

        proj = AttentiveProjection(num_inputs=10, dim=16, rank=4, compressed_rows=2, hidden=[32])
        proj(torch.randn(8, 10, 16)).shape  # torch.Size([8, 10, 4])
    """

    def __init__(self, num_inputs: int, dim: int, rank: int, compressed_rows: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.num_inputs = num_inputs
        self.rank = rank
        self.compress = LinearCompressionBlock(num_inputs, compressed_rows)
        self.mlp = MLP(compressed_rows * dim, hidden, out_features=num_inputs * rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.compress(x).flatten(1)
        return self.mlp(z).view(-1, self.num_inputs, self.rank)

    def flops_for_dim(self, dim: int) -> FlopCount:
        """``2·c·n·d`` (compression) + the MLP's ``Σ 2·in·out``."""
        return self.compress.flops_for_dim(dim) + count_flops(self.mlp)


class RowProducts(torch.autograd.Function):
    r"""``A Bᵀ`` per example, ``(B, n, d) × (B, k, d) → (B, n, k)``, with a backward whose products all
    take their operands as stored.

    .. math::
        \partial A = G\,B, \qquad \partial B = G^\top A

    Autograd's own backward of ``bmm(A, Bᵀ)`` forms ``∂(Bᵀ) = Aᵀ G``, a ``(d × n)(n × k)`` product
    per example whose left operand is transposed; with n and k small, MKL's batched kernel runs that
    layout several times slower than ``Gᵀ A`` (``(k × n)(n × d)``) gives the same numbers
    (docs/benchmarks.md). The FM's second product is this shape: ``X Zᵀᵀ``, with ``Zᵀ = Yᵀ X``.
    """

    @staticmethod
    def forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        a, b = ctx.saved_tensors
        # Under autocast the forward product ran in the lower precision, which is the gradient's dtype
        # here (backward runs without autocast): multiply in it, hand each input a gradient of its dtype.
        low = grad.dtype
        grad_a = torch.bmm(grad, b.to(low)).to(a.dtype) if ctx.needs_input_grad[0] else None
        grad_b = torch.bmm(grad.transpose(1, 2), a.to(low)).to(b.dtype) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class FactorizationMachineBlock(nn.Module):
    r"""Factorization Machine Block (FMB): second-order interactions of the n embeddings, compressed.

    .. math::
        \mathrm{FM}(X) = X\,(X^\top Y) \in \mathbb{R}^{n\times k}
        \qquad
        \mathrm{FMB}(X) = \mathrm{reshape}_{n_F\times e}\Big(\sigma\Big(\mathrm{MLP}\big(
            \mathrm{LN}(\mathrm{flatten}(\mathrm{FM}(X)))\big)\Big)\Big)

    with ``σ`` the output activation (identity by default, ReLU as in FuxiCTR's WuKong) and ``e``
    the width of each output row: ``e = d`` (nF new embeddings, the paper's FMB) by default, ``e = 1``
    (nF scalars) for the compact Wukong layer.

    ``X (Xᵀ Y)`` equals ``(X Xᵀ) Y`` (all pairwise dot products projected to rank k) at
    ``O(n·d·k)`` instead of ``O(n²·d)`` cost. Stacking layers raises the interaction order: layer i
    captures interactions of order up to ``2^i``.

    Args:
        num_inputs: n, rows of the input.
        dim: d, the embedding dimension.
        num_outputs: nF, rows of the output.
        rank: k, columns of the projection Y.
        hidden: hidden widths of the MLP (ReLU), which ends in a linear map to ``nF·e``.
        projection: ``"static"`` (learned Y) or ``"attentive"`` (Y computed from X).
        attention_rank: rows c of the compression feeding the attentive projection.
        attention_hidden: hidden widths of the attentive projection's MLP.
        dropout, norm: regularisation of the MLP's hidden layers (see :class:`~wukong.model.mlp.MLP`).
        activation: ``"none"`` or ``"relu"`` on the MLP's output.
        projection_init: initialisation of a static Y (see :class:`StaticProjection`).
        output_dim: e, the width of each output row (None: d).

    Shapes:
        ``(B, n, d) → (B, nF, e)``

    Example::

        fmb = FactorizationMachineBlock(num_inputs=30, dim=16, num_outputs=8, rank=4, hidden=[64])
        fmb(torch.randn(4, 30, 16)).shape  # torch.Size([4, 8, 16])
    """

    def __init__(
        self,
        num_inputs: int,
        dim: int,
        num_outputs: int,
        rank: int,
        hidden: Sequence[int],
        projection: str = "static",
        attention_rank: int = 8,
        attention_hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        norm: str = "none",
        activation: str = "none",
        projection_init: str = "xavier_uniform",
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.num_inputs, self.dim, self.num_outputs, self.rank = num_inputs, dim, num_outputs, rank
        self.output_dim = dim if output_dim is None else output_dim
        if projection == "static":
            self.projection: nn.Module = StaticProjection(num_inputs, rank, projection_init)
        elif projection == "attentive":
            self.projection = AttentiveProjection(num_inputs, dim, rank, attention_rank, attention_hidden)
        else:
            raise ValueError(f"projection must be 'static' or 'attentive', got {projection!r}")
        if activation not in FMB_ACTIVATIONS:
            raise ValueError(f"FMB activation must be one of {', '.join(FMB_ACTIVATIONS)}, got {activation!r}")
        self.norm = nn.LayerNorm(num_inputs * rank)
        self.mlp = MLP(
            num_inputs * rank, hidden, out_features=num_outputs * self.output_dim, dropout=dropout, norm=norm
        )
        self.activation: nn.Module = nn.ReLU() if activation == "relu" else nn.Identity()

    def interactions(self, x: torch.Tensor, projected: torch.Tensor | None = None) -> torch.Tensor:
        """``FM(X) = X (Xᵀ Y)``: ``(B, n, d) → (B, n, k)``, computed as ``X Zᵀᵀ`` with ``Zᵀ = Yᵀ X``.

        ``projected``: ``Zᵀ`` (``(B, k, d)``) when the caller computed it already (a Wukong layer
        computes it in one product with its other maps of X's rows, :meth:`WukongLayer.row_maps`).
        Both products are batched (a static Y is broadcast as a stride-0 view), and both send their
        gradient back to X in X's own ``(B, n, d)`` layout, so the two add up without a strided pass.
        ``matmul`` with a 2-D Y would first copy ``Xᵀ`` into a contiguous ``(B·d, n)`` block, and
        ``Xᵀ Y`` first returns its gradient to X transposed (``benchmarks/fm_products.py``: at d =
        128 both are about 1.1-1.5x slower forward and backward than this; docs/benchmarks.md)."""
        if projected is None:
            y_t = self.projection(x).transpose(-1, -2)
            if y_t.dim() == 2:
                y_t = y_t.expand(x.shape[0], *y_t.shape)
            projected = torch.bmm(y_t, x)
        return RowProducts.apply(x, projected)

    def forward(self, x: torch.Tensor, projected: torch.Tensor | None = None) -> torch.Tensor:
        fm = self.interactions(x, projected).flatten(1)
        return self.activation(self.mlp(self.norm(fm))).view(-1, self.num_outputs, self.output_dim)

    def flops(self) -> FlopCount:
        """``4·n·d·k`` (``Xᵀ Y`` then ``X (·)``) + projection + MLP."""
        fm = 2 * matmul_flops(self.num_inputs, self.dim, self.rank)
        return FlopCount(fm) + self.projection.flops_for_dim(self.dim) + count_flops(self.mlp)
