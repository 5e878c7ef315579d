"""Multi-layer perceptrons, the dense workhorse of every model here."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from wukong.model.flops import FlopCount, count_flops, sum_flops


class MLP(nn.Sequential):
    r"""A stack of ``Linear → ReLU`` layers, optionally ending in a plain ``Linear`` projection.

    .. math::
        h_0 = x,\quad h_{i+1} = \mathrm{ReLU}(W_i h_i + b_i),\quad y = W_o h_L + b_o

    Args:
        in_features: width of the input.
        hidden: widths of the ``Linear → ReLU`` layers (may be empty).
        out_features: width of a final projection without activation; ``None`` ends on the last
            hidden layer (its ReLU included).
        dropout: dropout probability after every hidden activation.

    Shapes:
        ``(*, in_features) → (*, out_features or hidden[-1])``

    Example::

        mlp = MLP(64, [256, 128], out_features=1)
        mlp(torch.randn(32, 64)).shape  # torch.Size([32, 1])
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], out_features: int | None = None, dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if out_features is not None:
            layers.append(nn.Linear(width, out_features))
            width = out_features
        if not layers:
            raise ValueError("an MLP needs at least one hidden layer or an out_features projection")
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = width

    def flops(self) -> FlopCount:
        """``Σ 2·in_i·out_i`` over the linear layers."""
        return sum_flops(count_flops(layer) for layer in self if isinstance(layer, nn.Linear))
