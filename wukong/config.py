"""Settings: nested dataclasses are the single source of truth.

A run's configuration is built in three layers, each overriding the one before:

1. the dataclass defaults below,
2. a YAML preset (``configs/<name>.yaml`` or any path), containing any subset of the keys,
3. command-line overrides ``--set section.key=value`` (values are parsed as YAML: ``[256,128]``,
   ``true``, ``1e-3``).

Unknown keys and ill-typed values are rejected with a message that names the key and lists the
valid ones. Loading, merging and type conversion are done by OmegaConf's structured configs.

Example::

    cfg = load_config("tiny", ["model.num_layers=4", "model.name=dcnv2"])
    cfg.model.num_layers  # 4
    save_config(cfg, "run.yaml"); load_config("run.yaml") == cfg  # True
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wukong.schema import FeatureSchema

if TYPE_CHECKING:  # OmegaConf is imported where presets are loaded, so the archs need torch alone
    from omegaconf.errors import OmegaConfBaseException

MODEL_NAMES = ("wukong", "dlrm", "dcnv2", "finalmlp")
FM_PROJECTIONS = ("static", "attentive")
MLP_NORMS = ("none", "batchnorm", "layernorm")
LINEAR_INITS = ("torch", "xavier_normal", "xavier_uniform", "kaiming_normal")
PROJECTION_INITS = ("xavier_uniform", "xavier_normal", "normal")
FMB_ACTIVATIONS = ("none", "relu")
LAYER_NORMS = ("dim", "layer", "none")
LAYER_FORMS = ("expand", "compact")
EMBEDDING_INITS = ("torchrec", "uniform", "normal")
# The presets folder: the repository's configs/ (editable installs), or WUKONG_CONFIGS (images set it).
PRESETS_DIR = Path(os.environ.get("WUKONG_CONFIGS") or Path(__file__).resolve().parent.parent / "configs")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and what is valid."""


def _positive(section: str, **values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{section}.{name} must be > 0, got {value}")


def _widths(section: str, **lists: Sequence[int]) -> None:
    for name, widths in lists.items():
        if any(w <= 0 for w in widths):
            raise ValueError(f"{section}.{name} must hold positive layer widths, got {list(widths)}")


def _choice(section: str, name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{section}.{name} must be one of {', '.join(choices)}, got {value!r}")


def _dropout(section: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"{section}.{name} must be in [0, 1), got {value}")


def _mlp_group(section: str, dropout: float | None, norm: str | None, prefix: str = "") -> None:
    _dropout(section, **{f"{prefix}dropout": dropout})
    _choice(section, f"{prefix}norm", norm, MLP_NORMS)


@dataclass
class DLRMConfig:
    """DLRM (Naumov et al. 2019): pairwise dot products of the n embeddings, then a top MLP."""

    top_mlp: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float | None = None  # the top MLP's dropout (None: model.mlp_dropout)
    norm: str | None = None  # the top MLP's norm: none, batchnorm, layernorm (None: model.mlp_norm)

    def __post_init__(self) -> None:
        _widths("model.dlrm", top_mlp=self.top_mlp)
        _mlp_group("model.dlrm", self.dropout, self.norm)


@dataclass
class DCNv2Config:
    """DCNv2 (Wang et al. 2021), stacked: low-rank cross layers on flatten(X0), then a deep MLP."""

    num_cross_layers: int = 3
    rank: int = 64
    deep_mlp: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float | None = None  # the deep MLP's dropout (None: model.mlp_dropout)
    norm: str | None = None  # the deep MLP's norm: none, batchnorm, layernorm (None: model.mlp_norm)

    def __post_init__(self) -> None:
        _positive("model.dcnv2", num_cross_layers=self.num_cross_layers, rank=self.rank)
        _widths("model.dcnv2", deep_mlp=self.deep_mlp)
        _mlp_group("model.dcnv2", self.dropout, self.norm)


@dataclass
class FinalMLPConfig:
    """FinalMLP (Mao et al. 2023): two gated MLP streams fused by multi-head bilinear interaction."""

    stream1_mlp: list[int] = field(default_factory=lambda: [512, 256])
    stream2_mlp: list[int] = field(default_factory=lambda: [512, 256])
    gate_hidden: int = 256
    num_heads: int = 16
    dropout: float | None = None  # both streams' dropout (None: model.mlp_dropout)
    norm: str | None = None  # both streams' norm: none, batchnorm, layernorm (None: model.mlp_norm)

    def __post_init__(self) -> None:
        _positive("model.finalmlp", gate_hidden=self.gate_hidden, num_heads=self.num_heads)
        _mlp_group("model.finalmlp", self.dropout, self.norm)
        _widths("model.finalmlp", stream1_mlp=self.stream1_mlp, stream2_mlp=self.stream2_mlp)
        if not self.stream1_mlp or not self.stream2_mlp:
            raise ValueError("model.finalmlp.stream1_mlp and stream2_mlp need at least one layer")
        for name, widths in (("stream1_mlp", self.stream1_mlp), ("stream2_mlp", self.stream2_mlp)):
            if widths[-1] % self.num_heads:
                raise ValueError(
                    f"model.finalmlp.{name}[-1] ({widths[-1]}) must be divisible by num_heads ({self.num_heads})"
                )


@dataclass
class ModelConfig:
    """The model: shared embedding settings, Wukong's own hyper-parameters, one section per baseline.

    Wukong is the project's model, so its settings sit at this level (``model.num_layers``); the
    baselines reuse the embedding layer and keep their own settings in ``model.<name>``.

    Regularisation and initialisation apply to every model alike. ``mlp_dropout`` and ``mlp_norm``
    set every interaction MLP (Wukong's FMB and head MLPs, DLRM's top, DCNv2's deep, FinalMLP's
    streams); a group's own key (``fmb_dropout``, ``head_norm``, ``dlrm.dropout``, ...) overrides
    them when set (``null`` inherits). Norms sit between each hidden Linear and its ReLU, dropout
    after the ReLU (see :class:`wukong.model.mlp.MLP`); neither changes the FLOP count.
    """

    name: str = "wukong"
    # Embedding layer (shared by every model): d, and the dense-feature MLP to num_dense_embeddings x d.
    embedding_dim: int = 128
    dense_mlp: list[int] = field(default_factory=lambda: [256])
    num_dense_embeddings: int = 1
    # Wukong interaction stack (paper, section 3.3-3.6).
    num_layers: int = 3
    num_fmb_embeddings: int = 16  # nF: rows produced by each layer's FMB
    num_lcb_embeddings: int = 16  # nL: rows produced by each layer's LCB
    fm_rank: int = 16  # k: columns of the FM projection Y
    fmb_mlp: list[int] = field(default_factory=lambda: [512])  # hidden widths of the FMB MLP
    fm_projection: str = "static"  # "static" (learned Y) or "attentive" (Y computed from X, paper 3.4)
    attention_rank: int = 8  # rows of the linear compression that feeds the attentive-Y MLP
    attention_mlp: list[int] = field(default_factory=lambda: [128])  # hidden widths of the attentive-Y MLP
    head_mlp: list[int] = field(default_factory=lambda: [512, 256])  # final MLP over flatten(X_l) -> logit
    fm_projection_init: str = "xavier_uniform"  # static Y: xavier_uniform, xavier_normal, or normal (N(0,1))
    fmb_activation: str = "none"  # on each FMB's output: none, or relu (as FuxiCTR's WuKong)
    layer_dropout: float = 0.0  # dropout on each Wukong layer's concat(FMB, LCB) before the residual sum
    layer_norm: str = "dim"  # each Wukong layer's LayerNorm: over d per row (dim), over all n·d (layer), or none
    layer_form: str = "expand"  # expand: the paper's layer, nF+nL rows out; compact: n rows kept (bottleneck)
    row_split: int = 1  # s: Wukong cuts each d-wide embedding into s rows of d/s before its layers (paper's embeddings)
    # Regularisation of the interaction MLPs (every model; group keys override the mlp_* ones).
    mlp_dropout: float = 0.0  # dropout probability after each hidden ReLU
    mlp_norm: str = "none"  # between each hidden Linear and its ReLU: none, batchnorm, layernorm
    fmb_dropout: float | None = None  # Wukong's FMB MLPs (None: mlp_dropout)
    fmb_norm: str | None = None  # Wukong's FMB MLPs (None: mlp_norm)
    head_dropout: float | None = None  # Wukong's head MLP (None: mlp_dropout)
    head_norm: str | None = None  # Wukong's head MLP (None: mlp_norm)
    dense_dropout: float = 0.0  # the embedding layer's dense-feature MLP (own setting, not inherited)
    dense_norm: str = "none"  # the embedding layer's dense-feature MLP (own setting, not inherited)
    # Initialisation.
    linear_init: str = "torch"  # every Linear and LCB weight: torch, xavier_normal, xavier_uniform, kaiming_normal
    embedding_init: str = "torchrec"  # torchrec: U(±1/sqrt(rows)); uniform: U(±scale); normal: N(0, scale²)
    embedding_init_scale: float = 1e-4  # the bound (uniform) or standard deviation (normal), whatever the rows
    dlrm: DLRMConfig = field(default_factory=DLRMConfig)
    dcnv2: DCNv2Config = field(default_factory=DCNv2Config)
    finalmlp: FinalMLPConfig = field(default_factory=FinalMLPConfig)

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"model.name {self.name!r} is not a model; choose one of: {', '.join(MODEL_NAMES)}")
        if self.fm_projection not in FM_PROJECTIONS:
            raise ValueError(
                f"model.fm_projection must be one of {', '.join(FM_PROJECTIONS)}, got {self.fm_projection!r}"
            )
        _positive(
            "model",
            embedding_dim=self.embedding_dim,
            num_dense_embeddings=self.num_dense_embeddings,
            num_layers=self.num_layers,
            num_fmb_embeddings=self.num_fmb_embeddings,
            num_lcb_embeddings=self.num_lcb_embeddings,
            fm_rank=self.fm_rank,
            attention_rank=self.attention_rank,
        )
        _widths(
            "model",
            dense_mlp=self.dense_mlp,
            fmb_mlp=self.fmb_mlp,
            attention_mlp=self.attention_mlp,
            head_mlp=self.head_mlp,
        )
        _positive("model", embedding_init_scale=self.embedding_init_scale)
        for prefix in ("mlp_", "fmb_", "head_", "dense_"):
            _mlp_group("model", getattr(self, f"{prefix}dropout"), getattr(self, f"{prefix}norm"), prefix)
        _choice("model", "fm_projection_init", self.fm_projection_init, PROJECTION_INITS)
        _choice("model", "fmb_activation", self.fmb_activation, FMB_ACTIVATIONS)
        _dropout("model", layer_dropout=self.layer_dropout)
        _choice("model", "layer_norm", self.layer_norm, LAYER_NORMS)
        _choice("model", "layer_form", self.layer_form, LAYER_FORMS)
        _positive("model", row_split=self.row_split)
        if self.embedding_dim % self.row_split:
            raise ValueError(
                f"model.row_split={self.row_split} does not divide model.embedding_dim={self.embedding_dim}; "
                "choose a divisor of the embedding width (1 keeps one row per feature)"
            )
        _choice("model", "linear_init", self.linear_init, LINEAR_INITS)
        _choice("model", "embedding_init", self.embedding_init, EMBEDDING_INITS)

    def mlp_style(self, dropout: float | None, norm: str | None) -> dict[str, Any]:
        """A group's ``dropout`` and ``norm``, the model-wide ``mlp_*`` ones where the group's are None."""
        return {
            "dropout": self.mlp_dropout if dropout is None else dropout,
            "norm": self.mlp_norm if norm is None else norm,
        }


@dataclass
class DataConfig:
    """Where the examples come from. Until a dataset is given, a Criteo-shaped synthetic schema is used."""

    dataset: str = ""  # URI of a prepared dataset (its manifest's schema wins over the fields below)
    num_dense: int = 13
    num_sparse: int = 26
    cardinality: int = 100_000
    num_multi_hot: int = 0

    def __post_init__(self) -> None:
        _positive("data", cardinality=self.cardinality)
        if self.num_dense < 0 or self.num_sparse < 0:
            raise ValueError("data.num_dense and data.num_sparse must be >= 0")

    def synthetic_schema(self) -> FeatureSchema:
        return FeatureSchema.synthetic(self.num_dense, self.num_sparse, self.cardinality, self.num_multi_hot)


SHARDING_STRATEGIES = ("hybrid", "planner", "table_wise", "row_wise", "column_wise", "data_parallel")
LR_SCHEDULES = ("constant", "linear", "cosine")
# FBGEMM's fused optimizers for sharded tables; its CPU kernels offer only the first three.
EMBEDDING_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd", "adam", "partial_rowwise_adam")
CPU_EMBEDDING_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd")
WEIGHT_DECAY_MODES = ("l2", "decoupled")
REPLICATED_TABLE_MODES = ("embedding", "dense")  # train.replicated_tables: which optimizer trains them
COMPILE_MODES = ("none", "dense")  # train.compile: what runs under torch.compile
PRECISIONS = ("auto", "fp32", "bf16")  # train.precision: the interaction arch's compute precision
MALLOC_MODES = ("retain", "system")  # train.malloc: whether freed host memory stays in the process


def _embedding_weight_decay(where: str, optimizer: str, weight_decay: float) -> None:
    if weight_decay < 0:
        raise ValueError(f"{where}: weight_decay must be >= 0, got {weight_decay}")
    if weight_decay > 0 and optimizer in ("adagrad", "sgd"):
        raise ValueError(
            f"{where}: FBGEMM's {optimizer} has no weight decay; use rowwise_adagrad or adam, "
            "or train.embedding_l2 (a penalty in the loss)"
        )


@dataclass
class EmbeddingGroupConfig:
    """Optimizer settings for a group of sharded (fused) tables, picked by feature name and size.

    A table joins the first group of ``train.embedding_groups`` whose ``features`` globs (fnmatch)
    match its feature's name and whose row bounds hold its size; tables of no group, and settings a
    group leaves null, use ``train.embedding_optimizer`` / ``embedding_learning_rate`` /
    ``embedding_weight_decay``. Replicated (data-parallel) tables are dense parameters: Adam trains
    them at ``train.learning_rate`` whatever their group.

    Example (YAML)::

        embedding_groups:
          - {min_rows: 100000, learning_rate: 0.1}           # big id spaces learn faster
          - {features: [genre*, year], optimizer: sgd, learning_rate: 0.5}
    """

    features: list[str] = field(default_factory=lambda: ["*"])  # fnmatch globs of feature names
    min_rows: int = 0  # only tables with at least this many rows
    max_rows: int = 0  # only tables with at most this many rows (0: no limit)
    optimizer: str | None = None  # one of EMBEDDING_OPTIMIZERS (None: train.embedding_optimizer)
    learning_rate: float | None = None  # None: train.embedding_learning_rate
    weight_decay: float | None = None  # None: train.embedding_weight_decay

    def matches(self, feature: str, rows: int) -> bool:
        from fnmatch import fnmatchcase

        in_size = rows >= self.min_rows and (not self.max_rows or rows <= self.max_rows)
        return in_size and any(fnmatchcase(feature, pattern) for pattern in self.features)


@dataclass
class TrainConfig:
    """Optimisation (paper, appendix A): Adam for dense parameters, row-wise Adagrad for embeddings,
    linear warm-up; plus validation, early stopping, checkpoints and sharding.

    Sharded tables are trained by an FBGEMM optimizer fused into the backward pass (each row is
    updated as its gradient is computed): only rows looked up in a batch change, so embedding weight
    decay touches those rows only, and fused gradients never exist as tensors, so they cannot join
    a global gradient norm (``grad_clip_norm``); ``embedding_grad_clip`` clamps them element-wise
    instead. Replicated (data-parallel) tables are trained by their group's embedding optimizer too
    (``replicated_tables=embedding``, :mod:`wukong.train.replicated`), on their dense gradients, so a
    table learns the same whatever its sharding; ``replicated_tables=dense`` trains them by Adam at
    ``learning_rate`` with the dense parameters (clipped with them, not weight-decayed).

    Learning rate at step s: ``lr = base · f(s) · p``, with ``f`` the warm-up then ``lr_schedule``
    factor and ``p = max(plateau_factor^r, plateau_min_factor)`` after r plateaus (``plateau_patience``
    validations in a row without a better AUC). ``f`` scales the dense rates (and the embedding ones with
    ``schedule_embeddings``); ``p`` scales every rate. The exported model is always the best
    validation step's, so a plateau schedule ends restored to its best weights. With
    ``plateau_restore`` each plateau also rewinds training to them: weights and optimizer state are
    those of the best step again, the data position and the step count go on, and the lowered rates
    fine-tune the best model instead of one already past it.
    """

    batch_size: int = 512  # global: each of W ranks reads batch_size / W rows per step
    epochs: int = 1
    max_steps: int = 0  # stop after this many steps (0: run all epochs)
    learning_rate: float = 1e-3  # Adam, dense parameters
    weight_decay: float = 0.0  # decoupled (AdamW): w -= lr·wd·w on dense weight matrices (not biases, norms, tables)
    embedding_optimizer: str = "rowwise_adagrad"  # sharded tables: rowwise_adagrad, adagrad, sgd; on GPU also adam,
    # partial_rowwise_adam
    embedding_learning_rate: float = 0.05  # the fused optimizer's rate, sharded tables
    embedding_weight_decay: float = 0.0  # the fused optimizer's decay of the rows in the batch (GPU only: FBGEMM's
    # CPU kernels ignore it, so CPU runs refuse it; not with adagrad or sgd)
    embedding_weight_decay_mode: str = "l2"  # rowwise_adagrad: l2 (wd·w added to the gradient) or decoupled
    # (w -= lr·wd·w); adam and partial_rowwise_adam always decay decoupled
    embedding_l2: float = 0.0  # loss += λ·mean over examples of Σ_f ||e_f||², e_f the pooled embeddings (all tables)
    embedding_groups: list[EmbeddingGroupConfig] = field(default_factory=list)  # per-group optimizer settings
    warmup_steps: int = 100  # linear warm-up of the dense learning rate
    lr_schedule: str = "constant"  # after warm-up: constant, linear (to 0 at the last step) or cosine
    schedule_embeddings: bool = False  # apply warm-up and lr_schedule to the embedding rates too
    plateau_factor: float = 1.0  # multiply every rate by this at each plateau (1: off; FuxiCTR's 0.1)
    plateau_patience: int = 1  # validations in a row without a better AUC that make a plateau
    plateau_min_factor: float = 0.0  # the plateau factor's floor (FuxiCTR: min_lr 1e-6 at lr 1e-3, i.e. 1e-3)
    plateau_restore: bool = False  # at each plateau that lowers the rates, go back to the best validation step's
    # weights and optimizer state first (off: train on from the current weights, FuxiCTR's way)
    ema_decay: float = 0.0  # judge, checkpoint and export an exponential moving average of the dense weights
    # with this decay (0: off; e.g. 0.998), wukong.train.average
    grad_clip_norm: float = 0.0  # clip the global norm of dense gradients (0: off; replicated tables: only if
    # replicated_tables=dense)
    embedding_grad_clip: float = 0.0  # clamp each table's gradient entries to ±this (0: off)
    validate_every: int = 0  # steps between validations (0: at each epoch end only)
    patience: int = 0  # stop after this many validations without a better AUC (0: never)
    checkpoint_every: int = 200  # steps between checkpoints (0: at the end only)
    keep_checkpoints: int = 2  # most recent complete checkpoints kept (the best one is kept too)
    log_every: int = 50  # steps between history.jsonl lines
    sharding: str = "hybrid"  # hybrid, planner, or one type for every table
    row_wise_min_rows: int = 5_000  # hybrid: tables with at least this many rows are row-wise
    data_parallel_max_rows: int = 128  # hybrid: tables with at most this many rows are replicated
    replicated_tables: str = "embedding"  # replicated tables trained by their embedding optimizer (embedding),
    # as if sharded, or by the dense Adam (dense)
    pipeline: bool = True  # TrainPipelineSparseDist: overlap input distribution with compute
    compile: str = "none"  # dense: torch.compile (inductor) the interaction arch of training steps (eager
    # fallback, logged, if it fails; validation stays eager); none: eager everywhere
    precision: str = "auto"  # the interaction arch's compute: bf16 (autocast; weights, embeddings, loss and
    # optimizer states stay fp32), fp32, or auto: bf16 on GPUs, fp32 on CPUs (wukong.train.precision)
    malloc: str = "retain"  # retain: freed host memory stays in the process for the next step (glibc: no page
    # faults for a step's tensors; wukong.malloc); system: the C library's defaults
    num_workers: int = 0  # DataLoader worker processes per rank
    seed: int = 0

    def table_optimizer(self, feature: str, rows: int) -> tuple[int | None, str, float, float]:
        """How the table of ``feature`` (``rows`` rows) is trained: (the index of its group in
        ``embedding_groups``, the first that matches, or None; optimizer; learning rate; weight decay),
        the group's settings where it sets them, else the ``embedding_*`` defaults."""
        index, group = next(
            ((i, g) for i, g in enumerate(self.embedding_groups) if g.matches(feature, rows)), (None, None)
        )
        optimizer = (group.optimizer if group else None) or self.embedding_optimizer
        lr = self.embedding_learning_rate if group is None or group.learning_rate is None else group.learning_rate
        wd = self.embedding_weight_decay if group is None or group.weight_decay is None else group.weight_decay
        return index, optimizer, lr, wd

    def __post_init__(self) -> None:
        _positive("train", batch_size=self.batch_size, epochs=self.epochs, learning_rate=self.learning_rate)
        _positive("train", embedding_learning_rate=self.embedding_learning_rate, log_every=self.log_every)
        _positive("train", keep_checkpoints=self.keep_checkpoints)
        for name in ("max_steps", "warmup_steps", "validate_every", "patience", "checkpoint_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1) (0: off, e.g. 0.998), got {self.ema_decay}")
        if self.grad_clip_norm < 0:
            raise ValueError(f"train.grad_clip_norm must be >= 0, got {self.grad_clip_norm}")
        if self.sharding not in SHARDING_STRATEGIES:
            raise ValueError(f"train.sharding must be one of {', '.join(SHARDING_STRATEGIES)}, got {self.sharding!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        for name in ("weight_decay", "embedding_l2", "embedding_grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.plateau_factor <= 1:
            raise ValueError(f"train.plateau_factor must be in (0, 1] (1: off), got {self.plateau_factor}")
        _positive("train", plateau_patience=self.plateau_patience)
        if not 0 <= self.plateau_min_factor <= 1:
            raise ValueError(f"train.plateau_min_factor must be in [0, 1], got {self.plateau_min_factor}")
        if self.plateau_restore and self.plateau_factor == 1:
            raise ValueError(
                "train.plateau_restore needs a plateau schedule: set train.plateau_factor below 1 (e.g. 0.1)"
            )
        _choice("train", "embedding_optimizer", self.embedding_optimizer, EMBEDDING_OPTIMIZERS)
        _choice("train", "embedding_weight_decay_mode", self.embedding_weight_decay_mode, WEIGHT_DECAY_MODES)
        _choice("train", "compile", self.compile, COMPILE_MODES)
        _choice("train", "precision", self.precision, PRECISIONS)
        _choice("train", "malloc", self.malloc, MALLOC_MODES)
        _choice("train", "replicated_tables", self.replicated_tables, REPLICATED_TABLE_MODES)
        _embedding_weight_decay("train.embedding_weight_decay", self.embedding_optimizer, self.embedding_weight_decay)
        for i, group in enumerate(self.embedding_groups):
            where = f"train.embedding_groups[{i}]"
            _choice(where, "optimizer", group.optimizer, EMBEDDING_OPTIMIZERS)
            if group.learning_rate is not None:
                _positive(where, learning_rate=group.learning_rate)
            if not group.features:
                raise ValueError(f"{where}.features must hold at least one glob (e.g. ['*'])")
            if group.min_rows < 0 or group.max_rows < 0 or (group.max_rows and group.max_rows < group.min_rows):
                raise ValueError(f"{where}: need 0 <= min_rows <= max_rows (max_rows 0: no limit)")
            _embedding_weight_decay(
                where,
                group.optimizer or self.embedding_optimizer,
                self.embedding_weight_decay if group.weight_decay is None else group.weight_decay,
            )


@dataclass
class Config:
    """A whole run: model, data and training settings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def valid_keys(path: str, root: type = Config) -> list[str]:
    """The keys that may follow ``path`` ("" for the top level, "model", "model.dlrm", ...)."""
    node: Any = root
    for part in filter(None, path.split(".")):
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields or not dataclasses.is_dataclass(fields[part].default_factory):  # type: ignore[arg-type]
            break
        node = fields[part].default_factory  # type: ignore[assignment]
    return [f.name for f in dataclasses.fields(node)]


def _explain(error: OmegaConfBaseException, source: str) -> ConfigError:
    full_key = str(getattr(error, "full_key", "") or "")
    parent = full_key.rpartition(".")[0]
    message = str(error).splitlines()[0]
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        section = getattr(error, "object_type", None)
        if parent or not dataclasses.is_dataclass(section) or section is Config:
            where, keys = (f"under '{parent}'" if parent else "at the top level"), valid_keys(parent)
        else:  # an item of a list of sections (e.g. train.embedding_groups): OmegaConf gives no path
            where, keys = f"in {section.__name__}", [f.name for f in dataclasses.fields(section)]
        return ConfigError(f"{source}: unknown key '{full_key}'; valid keys {where}: {', '.join(keys)}")
    return ConfigError(f"{source}: {full_key or 'value'}: {message}")


def resolve_named_yaml(name: str | Path, folder: Path, what: str) -> Path:
    """An existing file is itself; else a bare name (``tiny``) is ``folder/tiny.yaml``, and a name ending in
    .yaml/.yml a path.

    Raises:
        ConfigError: no such file (the message lists the names ``folder`` has).
    """
    path = Path(name)
    if not path.is_file() and path.suffix not in (".yaml", ".yml"):
        path = folder / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(
            f"{what} {str(name)!r} not found (looked for {path}); "
            f"give a YAML path or one of: {', '.join(names) or '(none installed)'}"
        )
    return path


def resolve_preset(preset: str | Path) -> Path:
    """A preset name (``tiny``) resolves to ``configs/tiny.yaml``; anything else is a path to a YAML file."""
    return resolve_named_yaml(preset, PRESETS_DIR, "config preset")


def load_config(preset: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the preset (a name under ``configs/`` or a YAML path), then ``key=value`` overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    merged = OmegaConf.structured(Config)
    source = "defaults"
    try:
        if preset:
            path = resolve_preset(preset)
            source = str(path)
            loaded = OmegaConf.load(path)
            if not isinstance(loaded, type(merged)) and loaded is not None:
                raise ConfigError(f"{path}: a config file must hold a mapping of sections, not a list")
            merged = OmegaConf.merge(merged, loaded or {})
        for override in overrides:
            source = f"--set {override}"
            if "=" not in override:
                raise ConfigError(f"{source}: expected KEY=VALUE, e.g. model.num_layers=4")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([override]))
        source = "invalid configuration"
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise _explain(error, source) from None
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{source}: {error}") from None


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """A :class:`Config` from a plain dict (e.g. a model card's), validated like a preset."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), data))  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise _explain(error, source) from None
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Config) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(config_to_yaml(cfg))
