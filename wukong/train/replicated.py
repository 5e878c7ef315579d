"""Replicated (data-parallel) tables trained by their embedding optimizer, as if they were sharded.

A table's sharding is a speed decision (the hybrid plan replicates the smallest tables to keep them out
of the all-to-all), and it should not change how the table learns. Sharded tables are trained by an
FBGEMM optimizer fused into the backward pass; a replicated table is an ordinary parameter of the DDP
part of the model, which the dense Adam at ``train.learning_rate`` would train. At the small-CTR
protocol's ~50 steps per run that Adam barely moves a replicated table from its random start (every
model lost 0.006-0.026 validation AUC to it; docs/results-small-ctr.md). So, with
``train.replicated_tables=embedding`` (the default), each replicated table gets its group's embedding
optimizer, rate and weight decay (:class:`~wukong.config.EmbeddingGroupConfig`, else the
``embedding_*`` defaults), run on its dense gradient:

- ``rowwise_adagrad`` (:class:`RowWiseAdagrad`), FBGEMM's exact row-wise rule;
- ``adagrad``: ``torch.optim.Adagrad``; ``sgd``: ``torch.optim.SGD``;
- ``adam``, ``partial_rowwise_adam`` (GPU kernels): ``torch.optim.AdamW`` (decoupled decay, as
  FBGEMM's); the partial row-wise variant keeps a per-entry second moment here.

``embedding_grad_clip`` clamps their gradient entries as it does the fused ones'; ``grad_clip_norm``
leaves them out, as it does every table. ``train.replicated_tables=dense`` restores the earlier
behaviour (Adam with the dense parameters).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import torch
from torchrec.optim.clipping import GradientClipping, GradientClippingOptimizer
from torchrec.optim.keyed import KeyedOptimizer, KeyedOptimizerWrapper

from wukong.config import TrainConfig

TABLE_WEIGHT = re.compile(r"embedding_bags\.t_(?P<feature>.+)\.weight$")  # see wukong.model.inference.table_name
EPS = 1e-8  # FBGEMM's default eps of its Adagrad kernels


class RowWiseAdagrad(torch.optim.Optimizer):
    r"""FBGEMM's exact row-wise Adagrad on dense gradients: one accumulator per row.

    .. math::
        g \leftarrow g + \lambda w \ (\text{l2 decay});\quad
        m_r \leftarrow m_r + \tfrac1D \textstyle\sum_j g_{rj}^2;\quad
        w_r \leftarrow w_r - \frac{\eta}{\sqrt{m_r} + \epsilon}\, g_r
        \quad (\text{decoupled decay: } w_r \leftarrow (1 - \eta\lambda)\, w_r \text{ first, rows with a gradient})

    A row whose gradient is zero (not looked up in the batch) keeps its weights and accumulator, as
    the fused kernel, which visits only the batch's rows, leaves them.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, decoupled: bool = False, eps: float = EPS) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "decoupled": decoupled, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                touched = grad.ne(0).any(dim=1, keepdim=True)
                if wd and not group["decoupled"]:
                    grad = grad + wd * param * touched
                elif wd:
                    param.mul_(torch.where(touched, 1 - lr * wd, 1.0))
                state = self.state[param]
                if not state:
                    state["momentum"] = torch.zeros(param.shape[0], 1, dtype=param.dtype, device=param.device)
                state["momentum"].add_(grad.square().mean(dim=1, keepdim=True))
                param.sub_(lr * grad / (state["momentum"].sqrt() + eps))
        return loss


def _torch_optimizer(name: str, params: list[torch.Tensor], lr: float, wd: float, train: TrainConfig):
    if name == "rowwise_adagrad":
        return RowWiseAdagrad(params, lr, wd, decoupled=train.embedding_weight_decay_mode == "decoupled")
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd, eps=EPS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)  # adam, partial_rowwise_adam


class _PerTable:
    """One torch optimizer per table, stepped together (tables of different groups differ in kind),
    sharing one state dict (keyed by parameter) so that a ``KeyedOptimizer`` sees every table's state."""

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = parts
        self.state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        for part in parts:
            part.state = self.state
        self.param_groups = [group for part in parts for group in part.param_groups]

    def step(self, closure=None) -> None:
        for part in self.parts:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)


def is_table(name: str) -> bool:
    """Whether parameter ``name`` is an embedding table's weight."""
    return TABLE_WEIGHT.search(name) is not None


def replicated_table_optimizer(tables: dict[str, torch.Tensor], train: TrainConfig) -> KeyedOptimizer:
    """The optimizer of the replicated ``tables`` (``{parameter name: weight}``), each by its embedding
    optimizer (see the module docstring)."""

    def build(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        by_id = {id(p): name for name, p in tables.items()}
        parts = []
        for param in params:
            feature = TABLE_WEIGHT.search(by_id[id(param)])["feature"]
            _, name, lr, wd = train.table_optimizer(feature, param.shape[0])
            parts.append(_torch_optimizer(name, [param], lr, wd, train))
        return _PerTable(parts)

    optimizer: KeyedOptimizer = KeyedOptimizerWrapper(tables, build)
    if train.embedding_grad_clip > 0:
        optimizer = GradientClippingOptimizer(
            optimizer, clipping=GradientClipping.VALUE, max_gradient=train.embedding_grad_clip
        )
    return optimizer
