"""Optimizers (paper, appendix A): fused row-wise Adagrad inside the sharded tables, Adam for the rest.

Data-parallel (replicated) tables are ordinary dense parameters and are trained by Adam. The dense
learning rate warms up linearly over ``warmup_steps``, then stays constant or decays (linear or
cosine) to zero at ``total_steps``; the embedding learning rate is constant (Adagrad adapts per row).
"""

from __future__ import annotations

import math

import torch
from torchrec.optim.clipping import GradientClipping, GradientClippingOptimizer
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from wukong.config import TrainConfig


def build_optimizers(model: torch.nn.Module, train: TrainConfig) -> tuple[CombinedOptimizer, KeyedOptimizer]:
    """(the optimizer that steps everything, its dense part whose learning rate the schedule sets)."""
    dense_params = dict(in_backward_optimizer_filter(model.named_parameters()))
    dense: KeyedOptimizer = KeyedOptimizerWrapper(dense_params, lambda ps: torch.optim.Adam(ps, lr=train.learning_rate))
    if train.grad_clip_norm > 0:
        dense = GradientClippingOptimizer(dense, clipping=GradientClipping.NORM, max_gradient=train.grad_clip_norm)
    parts: list[tuple[str, KeyedOptimizer]] = [("dense", dense)]
    fused = getattr(model, "fused_optimizer", None)
    if fused is not None and fused.params:
        parts.insert(0, ("sparse", fused))
    return CombinedOptimizer(parts), dense


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    r"""Multiplier of the base learning rate at ``step`` (0-based).

    .. math::
        f(s) = \frac{s+1}{w} \ (s < w);\quad
        \text{constant: } 1;\quad
        \text{linear: } 1 - \frac{s-w}{T-w};\quad
        \text{cosine: } \tfrac12\big(1 + \cos(\pi \tfrac{s-w}{T-w})\big)
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: KeyedOptimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
