r"""Initialisation of linear maps, chosen by name and kept when a meta-device model is materialised.

TorchRec builds models on the meta device and materialises them by calling each module's
``reset_parameters()`` (see docs/architecture.md). An initialisation applied once after
construction would be lost there, so the scheme is stored on each layer and ``reset_parameters``
reads it. Schemes, for a weight ``W ∈ R^{out×in}``:

- ``torch``: PyTorch's ``nn.Linear`` default, ``W ~ U(±1/√in)`` (Kaiming-uniform with ``a=√5``),
  bias ``~ U(±1/√in)``;
- ``xavier_normal``: ``W ~ N(0, 2/(in+out))``, bias 0 (Glorot & Bengio 2010);
- ``xavier_uniform``: ``W ~ U(±√(6/(in+out)))``, bias 0;
- ``kaiming_normal``: ``W ~ N(0, 2/in)``, bias 0 (He et al. 2015, for ReLU layers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wukong.config import LINEAR_INITS


@torch.no_grad()
def init_linear_(weight: torch.Tensor, bias: torch.Tensor | None, scheme: str) -> None:
    """Fill ``weight`` (``out × in``) and ``bias`` in place with ``scheme`` (see the module docstring)."""
    if scheme == "torch":
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        if bias is not None:
            bound = 1 / math.sqrt(weight.shape[1]) if weight.shape[1] > 0 else 0
            nn.init.uniform_(bias, -bound, bound)
        return
    if scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    else:
        raise ValueError(f"linear init must be one of {', '.join(LINEAR_INITS)}, got {scheme!r}")
    if bias is not None:
        nn.init.zeros_(bias)


class LinearInit:
    """Mixin of layers whose weights follow a named scheme: ``reset_parameters`` reads ``linear_init``."""

    linear_init: str = "torch"


class Linear(nn.Linear, LinearInit):
    """``nn.Linear`` whose ``reset_parameters`` applies its ``linear_init`` scheme."""

    def reset_parameters(self) -> None:
        if self.linear_init == "torch":
            super().reset_parameters()
        else:
            init_linear_(self.weight, self.bias, self.linear_init)


def apply_linear_init(module: nn.Module, scheme: str) -> nn.Module:
    """Give every :class:`LinearInit` layer of ``module`` the scheme ``scheme`` and re-initialise the
    ones that hold real storage (on the meta device the scheme is applied at materialisation).

    Returns ``module``. With ``scheme="torch"`` nothing is drawn again (layers are built that way)."""
    if scheme not in LINEAR_INITS:
        raise ValueError(f"linear init must be one of {', '.join(LINEAR_INITS)}, got {scheme!r}")
    for layer in module.modules():
        if isinstance(layer, LinearInit) and layer.linear_init != scheme:
            layer.linear_init = scheme
            if not any(p.is_meta for p in layer.parameters(recurse=False)):
                layer.reset_parameters()
    return module
