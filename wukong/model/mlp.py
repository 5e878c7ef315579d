"""Multi-layer perceptrons, the dense workhorse of every model here."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from wukong.config import MLP_NORMS
from wukong.model.flops import FlopCount, count_flops, sum_flops
from wukong.model.init import Linear


def _norm(kind: str, width: int) -> nn.Module | None:
    return {"batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}[kind](width) if kind != "none" else None


class MLP(nn.Sequential):
    r"""A stack of ``Linear → [Norm] → ReLU → [Dropout]`` layers, optionally ending in a plain ``Linear``.

    .. math::
        h_0 = x,\quad h_{i+1} = \mathrm{Dropout}_p\big(\mathrm{ReLU}(\mathrm{Norm}(W_i h_i + b_i))\big),
        \quad y = W_o h_L + b_o

    The final projection gets neither norm nor dropout. ``Norm`` is BatchNorm (statistics over the
    batch; running averages in eval mode) or LayerNorm (over the features of each example). Dropout
    zeroes each hidden unit with probability p in train mode and scales the rest by ``1/(1-p)``; in
    eval mode it is the identity. Neither adds matrix products, so :meth:`flops` is unchanged.

    Args:
        in_features: width of the input.
        hidden: widths of the hidden layers (may be empty).
        out_features: width of a final projection without activation; ``None`` ends on the last
            hidden layer (its ReLU included).
        dropout: dropout probability after every hidden activation (0: none).
        norm: ``"none"``, ``"batchnorm"`` or ``"layernorm"`` between each hidden Linear and its ReLU.

    Shapes:
        ``(*, in_features) → (*, out_features or hidden[-1])``; with ``norm="batchnorm"`` the input
        must be ``(B, in_features)``.

    Example::

        mlp = MLP(64, [256, 128], out_features=1, dropout=0.1, norm="batchnorm")
        mlp(torch.randn(32, 64)).shape  # torch.Size([32, 1])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int | None = None,
        dropout: float = 0.0,
        norm: str = "none",
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {dropout}")
        if norm not in MLP_NORMS:
            raise ValueError(f"MLP norm must be one of {', '.join(MLP_NORMS)}, got {norm!r}")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers.append(Linear(width, size))
            if (normalisation := _norm(norm, size)) is not None:
                layers.append(normalisation)
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if out_features is not None:
            layers.append(Linear(width, out_features))
            width = out_features
        if not layers:
            raise ValueError("an MLP needs at least one hidden layer or an out_features projection")
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = width

    def flops(self) -> FlopCount:
        """``Σ 2·in_i·out_i`` over the linear layers (norms, activations and dropout are element-wise)."""
        return sum_flops(count_flops(layer) for layer in self if isinstance(layer, nn.Linear))
