"""Optimizers (paper, appendix A): fused row-wise Adagrad inside the sharded tables, Adam for the rest.

- **Dense parameters**: Adam, or AdamW with ``train.weight_decay`` (decoupled, ``w ← w − lr·wd·w`` on
  weight matrices only), wrapped in global-norm clipping when ``train.grad_clip_norm`` is set.
- **Replicated (data-parallel) tables**: their embedding optimizer on their dense gradients
  (:mod:`wukong.train.replicated`), or with ``train.replicated_tables=dense`` the dense Adam.
- **Sharded tables**: an FBGEMM optimizer fused into the backward pass, chosen per table group
  (:class:`~wukong.config.EmbeddingGroupConfig`): the sharder's ``fused_params`` carry the default,
  and tables of a group carry their own through TorchRec's per-parameter optimizer settings
  (``_apply_optimizer_in_backward``), which the sharder merges over the default and groups into
  separate kernels.
- **Learning rates** (:class:`LearningRates`): base × warm-up/``lr_schedule`` factor × plateau factor.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from fbgemm_gpu.tbe.config.optimizer_config import WeightDecayMode
from torch.distributed.optim import _apply_optimizer_in_backward
from torchrec import optim as trec_optim
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.clipping import GradientClipping, GradientClippingOptimizer
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from wukong.config import CPU_EMBEDDING_OPTIMIZERS, ConfigError, TrainConfig
from wukong.train.replicated import is_table, replicated_table_optimizer

# Name -> (FBGEMM kernel, the TorchRec optimizer class that stands for it in per-table settings).
EMBEDDING_OPTIMIZER_TYPES: dict[str, tuple[EmbOptimType, type[torch.optim.Optimizer]]] = {
    "rowwise_adagrad": (EmbOptimType.EXACT_ROWWISE_ADAGRAD, trec_optim.RowWiseAdagrad),
    "adagrad": (EmbOptimType.EXACT_ADAGRAD, trec_optim.Adagrad),
    "sgd": (EmbOptimType.EXACT_SGD, trec_optim.SGD),
    "adam": (EmbOptimType.ADAM, trec_optim.Adam),
    "partial_rowwise_adam": (EmbOptimType.PARTIAL_ROWWISE_ADAM, trec_optim.PartialRowWiseAdam),
}


# ---- sharded tables ----------------------------------------------------------------------------
def _fused_settings(train: TrainConfig, optimizer: str, learning_rate: float, weight_decay: float) -> dict[str, Any]:
    """FBGEMM ``SplitTableBatchedEmbeddingBagsCodegen`` arguments (without ``optimizer``)."""
    mode = WeightDecayMode.NONE
    if weight_decay > 0:
        l2 = optimizer == "rowwise_adagrad" and train.embedding_weight_decay_mode == "l2"
        mode = WeightDecayMode.L2 if l2 else WeightDecayMode.DECOUPLE
    settings: dict[str, Any] = {"learning_rate": learning_rate, "weight_decay": weight_decay, "weight_decay_mode": mode}
    if train.embedding_grad_clip > 0:
        settings.update(gradient_clipping=True, max_gradient=train.embedding_grad_clip)
    return settings


def _check_device(optimizer: str, weight_decay: float, device_type: str, where: str) -> None:
    """FBGEMM's CPU kernels have no Adam, and (in fbgemm-gpu 1.8) ignore weight decay: refuse both."""
    if device_type != "cpu":
        return
    if optimizer not in CPU_EMBEDDING_OPTIMIZERS:
        raise ConfigError(
            f"{where}: {optimizer} needs a GPU; FBGEMM's CPU kernels offer {', '.join(CPU_EMBEDDING_OPTIMIZERS)}"
        )
    if weight_decay > 0:
        raise ConfigError(
            f"{where}: embedding weight decay {weight_decay:g} would be ignored by FBGEMM's CPU kernels; "
            "on CPU use train.embedding_l2 (a penalty in the loss) instead"
        )


def fused_params(train: TrainConfig, device_type: str) -> dict[str, Any]:
    """The sharder's ``fused_params``: the default optimizer of every sharded table.

    Raises:
        ConfigError: for settings FBGEMM cannot honour on ``device_type`` (on CPU: Adam, weight decay).
    """
    _check_device(train.embedding_optimizer, train.embedding_weight_decay, device_type, "train.embedding_optimizer")
    settings = _fused_settings(
        train, train.embedding_optimizer, train.embedding_learning_rate, train.embedding_weight_decay
    )
    return {"optimizer": EMBEDDING_OPTIMIZER_TYPES[train.embedding_optimizer][0], **settings}


def assign_table_optimizers(ebc: EmbeddingBagCollection | None, train: TrainConfig, device_type: str) -> dict[str, str]:
    """Give each table of an ``train.embedding_groups`` group its group's optimizer settings.

    Call on the unsharded (e.g. meta) collection before sharding; tables of no group keep the
    sharder's defaults. Returns ``{table: "optimizer lr=... wd=..."}`` for the tables it set.
    """
    assigned: dict[str, str] = {}
    if ebc is None or not train.embedding_groups:
        return assigned
    for config in ebc.embedding_bag_configs():
        feature = config.feature_names[0]
        index, optimizer, lr, wd = train.table_optimizer(feature, config.num_embeddings)
        if index is None:
            continue
        _check_device(optimizer, wd, device_type, f"train.embedding_groups[{index}]")
        settings = _fused_settings(train, optimizer, lr, wd)
        settings["lr"] = settings.pop("learning_rate")  # TorchRec renames it back when merging
        weight = ebc.embedding_bags[config.name].weight
        _apply_optimizer_in_backward(EMBEDDING_OPTIMIZER_TYPES[optimizer][1], [weight], settings)
        assigned[config.name] = f"{optimizer} lr={lr:g} wd={wd:g}"
    return assigned


# ---- dense parameters ----------------------------------------------------------------------------
def is_decayed(name: str, param: torch.Tensor) -> bool:
    """Weight decay applies to weight matrices: not to biases, norm scales (1-D) or embedding tables."""
    return param.dim() >= 2 and not is_table(name)


def _dense_optimizer(params: dict[str, torch.Tensor], train: TrainConfig) -> KeyedOptimizer:
    if train.weight_decay <= 0:
        return KeyedOptimizerWrapper(params, lambda ps: torch.optim.Adam(ps, lr=train.learning_rate))
    decayed = {id(p) for name, p in params.items() if is_decayed(name, p)}

    def adamw(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
        groups = [
            {"params": [p for p in ps if id(p) in decayed], "weight_decay": train.weight_decay},
            {"params": [p for p in ps if id(p) not in decayed], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=train.learning_rate)

    return KeyedOptimizerWrapper(params, adamw)


def build_optimizers(model: torch.nn.Module, train: TrainConfig) -> tuple[CombinedOptimizer, KeyedOptimizer]:
    """(the optimizer that steps everything, its dense part). Its ``sparse`` part, when there is one,
    is the sharded model's ``fused_optimizer`` (its steps set the kernels' learning rates); its
    ``replicated`` part trains the replicated tables (:func:`embedding_optimizers` lists both)."""
    params = dict(in_backward_optimizer_filter(model.named_parameters()))
    tables = {n: p for n, p in params.items() if is_table(n)} if train.replicated_tables == "embedding" else {}
    dense = _dense_optimizer({n: p for n, p in params.items() if n not in tables}, train)
    if train.grad_clip_norm > 0:
        dense = GradientClippingOptimizer(dense, clipping=GradientClipping.NORM, max_gradient=train.grad_clip_norm)
    parts: list[tuple[str, KeyedOptimizer]] = [("dense", dense)]
    fused = getattr(model, "fused_optimizer", None)
    if fused is not None and fused.params:
        parts.insert(0, ("sparse", fused))
    if tables:
        parts.append(("replicated", replicated_table_optimizer(tables, train)))
    return CombinedOptimizer(parts), dense


def embedding_optimizers(optimizer: CombinedOptimizer) -> list[KeyedOptimizer]:
    """The parts of :func:`build_optimizers`'s optimizer that train tables (fused and replicated)."""
    return [part for key, part in optimizer.optimizers if key in ("sparse", "replicated")]


# ---- learning rates ----------------------------------------------------------------------------
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


def plateau_scale(scale: float, checks_without_gain: int, train: TrainConfig) -> float:
    r"""The plateau factor after a validation: ``max(scale · plateau_factor, plateau_min_factor)`` when
    the validations in a row without a better AUC reach a multiple of ``plateau_patience``, else ``scale``.

    With ``plateau_factor=0.1, plateau_patience=1`` every validation that does not improve the best
    AUC divides every learning rate by 10 (FuxiCTR's ``reduce_lr_on_plateau``, which also keeps
    the rate at or above ``min_lr``: ``plateau_min_factor``)."""
    if train.plateau_factor < 1 and checks_without_gain > 0 and checks_without_gain % train.plateau_patience == 0:
        return max(scale * train.plateau_factor, train.plateau_min_factor)
    return scale


def set_learning_rate(optimizer: KeyedOptimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class LearningRates:
    r"""Sets every optimizer's learning rates before each step.

    .. math::
        \mathrm{lr}_g(s) = \mathrm{base}_g \cdot f(s) \cdot p \ \text{(dense)},\qquad
        \mathrm{lr}_g(s) = \mathrm{base}_g \cdot [f(s)]^{\mathbb 1[\text{schedule\_embeddings}]} \cdot p
        \ \text{(tables)}

    with ``f`` from :func:`lr_factor`, ``p`` the plateau factor (:func:`plateau_scale`) and
    ``base_g`` each parameter group's rate when this object is built (dense: ``train.learning_rate``;
    a table group, sharded or replicated: its own embedding rate). Build it before loading a
    checkpoint, whose saved rates are already scaled. The fused kernels read the new rate at the
    optimizer's next ``zero_grad``/``step``, i.e. before the next backward pass.
    """

    def __init__(
        self, dense: KeyedOptimizer, tables: list[KeyedOptimizer], train: TrainConfig, total_steps: int
    ) -> None:
        self.dense, self.tables, self.train, self.total_steps = dense, tables, train, total_steps
        self.dense_bases = [group["lr"] for group in dense.param_groups]
        self.table_bases = [group["lr"] for group in self._table_groups()]

    def _table_groups(self) -> list[dict[str, Any]]:
        return [group for part in self.tables for group in part.param_groups]  # afresh: loading replaces them

    def apply(self, step: int, plateau: float = 1.0) -> float:
        """Set the rates for ``step`` (0-based); returns the first dense group's."""
        factor = lr_factor(step, self.train.warmup_steps, self.total_steps, self.train.lr_schedule)
        for group, base in zip(self.dense.param_groups, self.dense_bases):
            group["lr"] = base * factor * plateau
        table_factor = (factor if self.train.schedule_embeddings else 1.0) * plateau
        for group, base in zip(self._table_groups(), self.table_bases):
            group["lr"] = base * table_factor
        return self.dense.param_groups[0]["lr"]
