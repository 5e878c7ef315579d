"""Analytic forward FLOPs, the x-axis of the paper's scaling law (GFLOP/example).

Convention (the same as :class:`torch.utils.flop_counter.FlopCounterMode`): a matrix product of
shapes ``(m, k) @ (k, n)`` costs ``2·m·k·n`` FLOPs; element-wise work (activations, LayerNorm,
residual sums, gates) and embedding look-ups are not counted. In these models such work is a small
fraction of the matrix products; a training step costs about ``3×`` the forward FLOPs.

Every module in :mod:`wukong.model` that holds matrix products exposes ``flops() -> FlopCount``
written from its shapes (not by tracing); :func:`count_flops` is the entry point. Tests check the
formulas against ``FlopCounterMode`` within 5%.

Example::

    arch = WukongArch(num_features=27, dim=64, ...)
    count_flops(arch).per_example / 1e6  # MFLOP per example
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs of a module: ``per_example`` scales with the batch, ``per_batch`` does not.

    ``per_batch`` is work done once per forward call whatever the batch size (e.g. FinalMLP's gates
    computed from learned context vectors). A batch of B examples costs ``B·per_example + per_batch``.
    """

    per_example: int
    per_batch: int = 0

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.per_example + other.per_example, self.per_batch + other.per_batch)

    def total(self, batch_size: int) -> int:
        return batch_size * self.per_example + self.per_batch

    @property
    def mflops(self) -> float:
        return self.per_example / 1e6


# Modules without matrix products: element-wise or per-feature work, which FLOP counts here leave out.
ELEMENTWISE = (nn.ReLU, nn.Identity, nn.LayerNorm, nn.BatchNorm1d, nn.Dropout, nn.Sigmoid, nn.GELU, nn.SiLU)


def matmul_flops(m: int, k: int, n: int) -> int:
    """``(m, k) @ (k, n)``: 2·m·k·n."""
    return 2 * m * k * n


def linear_flops(layer: nn.Linear) -> int:
    """``y = x Wᵀ + b`` for one example: 2·in·out (the bias add is element-wise)."""
    return matmul_flops(1, layer.in_features, layer.out_features)


def sum_flops(counts: Iterable[FlopCount]) -> FlopCount:
    total = FlopCount(0)
    for count in counts:
        total = total + count
    return total


def count_flops(module: nn.Module) -> FlopCount:
    """Forward FLOPs of any model of :mod:`wukong.model` (or plain ``nn.Linear``/``nn.Sequential``).

    Raises:
        TypeError: if the module holds matrix products this module has no formula for.
    """
    if hasattr(module, "flops"):
        return module.flops()
    if isinstance(module, nn.Linear):
        return FlopCount(linear_flops(module))
    if isinstance(module, (nn.Sequential, nn.ModuleList)):
        return sum_flops(count_flops(child) for child in module)
    if isinstance(module, ELEMENTWISE):
        return FlopCount(0)
    raise TypeError(f"no FLOP formula for {type(module).__name__}; give it a flops() method")
