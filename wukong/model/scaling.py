"""Upscaling rules: a configuration of each model family for a target MFLOP/example.

The paper's scaling law is quality against GFLOP/example (arXiv 2403.02545, Table 5 and its scaling
figure), with each family grown the way the paper grows it:

- **wukong**: layers first, then width. The depth ``l`` grows from 1 to :data:`MAX_WUKONG_LAYERS`
  (8) at the base widths; beyond that the 8-layer stack widens, with nF, nL, k, the FMB MLP and the
  head MLP (and the attentive projection's MLP) all multiplied by one factor ``w``. The rule is the
  same for both layer forms (``model.layer_form``): every size it grows raises the cost of either;
- **dlrm**: the top MLP widens and deepens: one more layer (a copy of its first, widest one) per
  doubling of ``w``;
- **dcnv2**: the cross network and the deep MLP deepen together (one more cross layer and one more
  deep layer per doubling of ``w``) while the cross rank and the deep MLP widen;
- **finalmlp**: both streams widen and deepen (one layer per doubling of ``w``), the gates widen.

What never changes: the embedding dimension d and the dense-feature MLP (the embedding layer is
sparse scaling, not the dense compute these laws are about), FinalMLP's heads, the attentive
projection's compression rank, and every non-size setting (init, norms, dropout).

Hitting a target
----------------
A rule is a ladder of *stages* ``j = 0, 1, ...``: a depth and a starting width factor ``w_j``
(Wukong: ``l = j + 1`` at ``w_j = 1``; the others: ``j`` extra layers at ``w_j = 2^j``). Within a
stage every width is ``round(base width · w)`` for ``w ≥ w_j``, so the forward FLOPs ``C(j, w)``
grow with ``w``; the stage covers costs from ``C(j, w_j)`` up to the next stage's start (the last
Wukong stage is open-ended, and the first stage also shrinks, ``w < w_0``, for targets below its
start). For a target T the stage is the last one starting at or below T, and ``w`` is found by
bisection: the ladder's configurations just below and just above T (the latter may be the next
stage's start). At small sizes one step of nF, nL or k can cost 10-25% more, so the lower one's MLPs
alone may then be widened (at most 1.5×, never reaching the upper one's cost): this fine knob fills
the gaps. The closest of these to T is returned. The costs reachable this way form one fixed,
increasing set and the nearest of them is taken, so the returned MFLOP/example is **monotone in
the target**, and within :data:`TOLERANCE` (5%) of it except at the extremes, where a
``ValueError`` says so. When depth steps up, the widths fall back to the stage's start: widths
along the ladder are not monotone, FLOPs are.

Widths below 256 may be any integer ≥ 1 (so small models can be sized finely); from 256 they are
multiples of 8 (vector units), FinalMLP's stream outputs multiples of its head count. FLOPs are the
analytic counts of :mod:`wukong.model.flops` (checked against ``FlopCounterMode`` by the tests).

Example::

    config = scaled_config("wukong", schema, load_config("tiny").model, target_mflops=2.0)
    mflops_per_example("wukong", schema, config)  # within 5% of 2.0
    scaled_arch_config("wukong", 40, ModelConfig(), 1000.0)  # the arch alone: torch only, no TorchRec
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from wukong.config import ModelConfig
from wukong.model.build import build_arch, build_model
from wukong.model.flops import count_flops
from wukong.schema import FeatureSchema

MAX_WUKONG_LAYERS = 8  # Wukong grows in depth up to this many layers before it widens
TOLERANCE = 0.05  # the largest relative distance to the target a returned config may have
_RESOLUTION = 1e-4  # bisection stops when the width factors bracketing the target are this close
_WIDTH_RANGE = 2.0**12  # how far a width factor may move from a stage's start
_TRIM_RANGE = 1.5  # how much wider than the ladder's the MLPs may be made to close a gap


def _count(value: float) -> int:
    """An integer size (nF, nL, k, a rank): at least 1."""
    return max(1, round(value))


def _width(value: float, multiple: int = 1) -> int:
    """An MLP width: any integer below 256, a multiple of 8 from 256; always a multiple of ``multiple``."""
    step = math.lcm(multiple, 8) if value >= 256 else multiple
    return max(step, round(value / step) * step)


def _mlp(widths: list[int], factor: float, extra_layers: int = 0, last_multiple: int = 1) -> list[int]:
    """Hidden widths × ``factor``, with ``extra_layers`` copies of the first (widest) layer in front."""
    if not widths:
        return []
    deeper = [widths[0]] * extra_layers + list(widths)
    return [_width(h * factor, last_multiple if i == len(deeper) - 1 else 1) for i, h in enumerate(deeper)]


def _get(config: ModelConfig, path: str) -> Any:
    section, _, key = path.rpartition(".")
    return getattr(getattr(config, section) if section else config, key)


def _with(config: ModelConfig, changes: dict[str, Any]) -> ModelConfig:
    """``config`` with ``changes`` (keys ``"key"`` or ``"section.key"``) applied, one replace per section."""
    top = {k: v for k, v in changes.items() if "." not in k}
    for section in {k.split(".")[0] for k in changes if "." in k}:
        inner = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith(section + ".")}
        top[section] = dataclasses.replace(getattr(config, section), **inner)
    return dataclasses.replace(config, **top)


@dataclass(frozen=True)
class Rule:
    """How a family grows (see the module docstring).

    Attributes:
        counts: integer sizes, multiplied by the width factor ``w``.
        mlps: MLP width lists, multiplied by ``w`` (and deepened by one layer per stage if ``deepen``).
        depth: the other settings a stage changes (from the base config and the stage).
        start: the width factor ``w_j`` at which stage j starts.
        stages: how many stages there are (None: unbounded).
        heads: the multiple the last width of every MLP must be (FinalMLP's head count).
    """

    counts: tuple[str, ...]
    mlps: tuple[str, ...]
    depth: Callable[[ModelConfig, int], dict[str, Any]]
    deepen: bool
    start: Callable[[int], float]
    stages: int | None
    heads: Callable[[ModelConfig], int] = lambda config: 1

    def config(self, base: ModelConfig, stage: int, factor: float) -> ModelConfig:
        """Stage ``stage`` at width factor ``factor``."""
        extra, heads = stage if self.deepen else 0, self.heads(base)
        changes = {path: _count(_get(base, path) * factor) for path in self.counts}
        changes.update({path: _mlp(_get(base, path), factor, extra, heads) for path in self.mlps})
        return _with(base, {**changes, **self.depth(base, stage)})

    def trim(self, config: ModelConfig, factor: float) -> ModelConfig:
        """``config`` with its MLPs alone × ``factor``: the fine knob between two widths of the ladder."""
        heads = self.heads(config)
        return _with(config, {path: _mlp(_get(config, path), factor, 0, heads) for path in self.mlps})


def _doubling(stage: int) -> float:
    return 2.0**stage


RULES: dict[str, Rule] = {
    "wukong": Rule(
        counts=("num_fmb_embeddings", "num_lcb_embeddings", "fm_rank"),
        mlps=("fmb_mlp", "head_mlp", "attention_mlp"),
        depth=lambda base, stage: {"num_layers": stage + 1},
        deepen=False,
        start=lambda stage: 1.0,
        stages=MAX_WUKONG_LAYERS,
    ),
    "dlrm": Rule((), ("dlrm.top_mlp",), lambda base, stage: {}, True, _doubling, None),
    "dcnv2": Rule(
        counts=("dcnv2.rank",),
        mlps=("dcnv2.deep_mlp",),
        depth=lambda base, stage: {"dcnv2.num_cross_layers": base.dcnv2.num_cross_layers + stage},
        deepen=True,
        start=_doubling,
        stages=None,
    ),
    "finalmlp": Rule(
        counts=("finalmlp.gate_hidden",),
        mlps=("finalmlp.stream1_mlp", "finalmlp.stream2_mlp"),
        depth=lambda base, stage: {},
        deepen=True,
        start=_doubling,
        stages=None,
        heads=lambda config: config.finalmlp.num_heads,
    ),
}


def scale_widths(config: ModelConfig, factor: float) -> ModelConfig:
    """A copy of ``config`` with every family's widths multiplied by ``factor`` at its current depth:
    Wukong's nF, nL, k and MLPs, DLRM's top MLP, DCNv2's rank and deep MLP, FinalMLP's streams and gate
    (the dense-feature MLP of the shared embedding layer excepted)."""
    scaled = RULES["wukong"].config(config, config.num_layers - 1, factor)
    for name in ("dlrm", "dcnv2", "finalmlp"):
        scaled = RULES[name].config(scaled, 0, factor)
    return scaled


def mflops_per_example(name: str, schema: FeatureSchema, config: ModelConfig) -> float:
    return count_flops(build_model(name, schema, config, device="meta")).mflops


class _Cost:
    """MFLOP/example of configs of one family: its arch on ``num_features`` rows, plus ``fixed`` FLOPs."""

    def __init__(self, name: str, num_features: int, dense_rows: int, fixed: int = 0) -> None:
        self.name, self.num_features, self.dense_rows, self.fixed = name, num_features, dense_rows, fixed
        self.cache: dict[str, float] = {}

    @classmethod
    def of_model(cls, name: str, schema: FeatureSchema, base: ModelConfig) -> _Cost:
        """The whole model on ``schema``: the embedding layer (built once, on meta) adds its dense MLP."""
        embedding = build_model(name, schema, base, device="meta").embedding
        fixed = count_flops(embedding).per_example  # the dense MLP: never scaled
        return cls(name, embedding.num_features, embedding.num_dense_embeddings, fixed)

    def __call__(self, config: ModelConfig) -> float:
        key = repr(config)
        if key not in self.cache:
            with torch.device("meta"):
                arch = build_arch(self.name, self.num_features, config, self.dense_rows)
            self.cache[key] = (self.fixed + count_flops(arch).per_example) / 1e6
        return self.cache[key]


def _bracket(
    cost: _Cost, make: Callable[[float], ModelConfig], start: float, target: float, grow: bool, reach: float
) -> tuple[ModelConfig | None, ModelConfig | None]:
    """Configs ``make(w)`` costing just ≤ and just > ``target``, for ``w`` from ``start`` up to
    ``start·reach`` (``grow``) or down to ``start/reach``; None where no such ``w`` gives one. Doubling
    (or halving) ``w`` brackets the target, then bisection on ``log w`` closes in."""
    low = high = start
    while (cost(make(high)) <= target) if grow else (cost(make(low)) > target):
        if max(high / start, start / low) >= reach:
            return (make(high), None) if grow else (None, make(low))
        low, high = (high, min(high * 2, start * reach)) if grow else (max(low / 2, start / reach), low)
    while high / low > 1 + _RESOLUTION:
        middle = math.sqrt(low * high)
        if cost(make(middle)) <= target:
            low = middle
        else:
            high = middle
    return make(low), make(high)


def scaled_config(name: str, schema: FeatureSchema, base: ModelConfig, target_mflops: float) -> ModelConfig:
    """The config of family ``name`` grown (or shrunk) from ``base`` by the family's rule to cost
    ``target_mflops`` MFLOP/example within 5% (see the module docstring); its ``name`` is ``name``.

    Raises:
        ValueError: an unknown family, or a target out of reach (below what the fixed parts, such as
            d and the number of features, already cost).
    """
    _check(name, target_mflops)
    return _scaled(_Cost.of_model(name, schema, base), base, target_mflops)


def scaled_arch_config(
    name: str, num_features: int, base: ModelConfig, target_mflops: float, num_dense_rows: int = 1
) -> ModelConfig:
    """The config of family ``name`` whose arch alone (:func:`~wukong.model.build.build_arch` on
    ``num_features`` rows) costs ``target_mflops`` MFLOP/example, by the same rule as
    :func:`scaled_config`. No embedding layer is built, so this needs no TorchRec: use it to size the
    dense part on machines that have torch alone."""
    _check(name, target_mflops)
    return _scaled(_Cost(name, num_features, num_dense_rows), base, target_mflops)


def _check(name: str, target_mflops: float) -> None:
    if name not in RULES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(RULES)}")
    if not target_mflops > 0:
        raise ValueError(f"target_mflops must be > 0, got {target_mflops}")


def _scaled(cost: _Cost, base: ModelConfig, target_mflops: float) -> ModelConfig:
    """The closest config to ``target_mflops`` on the ladder of ``cost.name``'s rule (see the module docstring)."""
    name, rule = cost.name, RULES[cost.name]

    def stage_start(stage: int) -> ModelConfig | None:
        if rule.stages is not None and stage >= rule.stages:
            return None
        return rule.config(base, stage, rule.start(stage))

    stage = 0
    while (following := stage_start(stage + 1)) is not None and cost(following) <= target_mflops:
        stage += 1
    start = rule.start(stage)
    make = functools.partial(rule.config, base, stage)
    shrink = cost(make(start)) > target_mflops  # below the first stage
    below, above = _bracket(cost, make, start, target_mflops, grow=not shrink, reach=_WIDTH_RANGE)
    if not shrink and following is not None and (above is None or cost(above) >= cost(following)):
        above = following
    if below is not None:  # the fine knob: widen below's MLPs alone, short of the next config up
        below, trimmed = _bracket(cost, functools.partial(rule.trim, below), 1.0, target_mflops, True, _TRIM_RANGE)
        if trimmed is not None and (above is None or cost(trimmed) < cost(above)):
            above = trimmed
    candidates = [c for c in (below, above) if c is not None]
    best = min(candidates, key=lambda c: abs(math.log(cost(c) / target_mflops)))
    achieved = cost(best)
    if abs(achieved / target_mflops - 1) > TOLERANCE:
        raise ValueError(
            f"{name}: cannot reach {target_mflops:g} MFLOP/example within {TOLERANCE:.0%} by its upscaling rule "
            f"(closest: {achieved:.4g}); change embedding_dim, the base widths or the number of features"
        )
    return dataclasses.replace(best, name=name)


def config_for_flops(name: str, schema: FeatureSchema, config: ModelConfig, target_mflops: float) -> ModelConfig:
    """The same as :func:`scaled_config` (kept for callers of the older name)."""
    return scaled_config(name, schema, config, target_mflops)
