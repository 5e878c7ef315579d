"""Size a model to a FLOP budget: the knob behind throughput benchmarks and scaling sweeps.

The paper's scaling law is quality against GFLOP/example; to compare models at equal cost, every
width of a model is multiplied by one factor ``s``, and ``s`` is found by bisection
(forward FLOPs grow monotonically with ``s``). Wukong's rows per layer (nF, nL), DCNv2's rank and
FinalMLP's gate are widths too and scale with ``s``; layer counts, d and k stay as configured.
"""

from __future__ import annotations

import dataclasses
import math

from wukong.config import ModelConfig
from wukong.model.build import build_model
from wukong.model.flops import count_flops
from wukong.schema import FeatureSchema

WIDTH_MULTIPLE = 16  # keeps widths divisible by FinalMLP's heads and friendly to vector units


# Integer settings that are widths too, scaled like the MLPs (at least 1).
SCALED_COUNTS = {
    "ModelConfig": ("num_fmb_embeddings", "num_lcb_embeddings"),
    "DCNv2Config": ("rank",),
    "FinalMLPConfig": ("gate_hidden",),
}


def _scale_section(section, factor: float):
    changes: dict[str, object] = {
        name: max(1, round(getattr(section, name) * factor)) for name in SCALED_COUNTS.get(type(section).__name__, ())
    }
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, list) and f.name != "dense_mlp":
            changes[f.name] = [max(WIDTH_MULTIPLE, round(w * factor / WIDTH_MULTIPLE) * WIDTH_MULTIPLE) for w in value]
    return dataclasses.replace(section, **changes)


def scale_widths(config: ModelConfig, factor: float) -> ModelConfig:
    """A copy of ``config`` with every width multiplied by ``factor``: MLP hidden widths of all models
    (the dense-feature MLP of the shared embedding layer excepted), Wukong's nF and nL, DCNv2's rank
    and FinalMLP's gate width."""
    return dataclasses.replace(
        _scale_section(config, factor),
        dlrm=_scale_section(config.dlrm, factor),
        dcnv2=_scale_section(config.dcnv2, factor),
        finalmlp=_scale_section(config.finalmlp, factor),
    )


def mflops_per_example(name: str, schema: FeatureSchema, config: ModelConfig) -> float:
    return count_flops(build_model(name, schema, config, device="meta")).mflops


def config_for_flops(
    name: str, schema: FeatureSchema, config: ModelConfig, target_mflops: float, steps: int = 24
) -> ModelConfig:
    """The width-scaled ``config`` whose model ``name`` costs closest to ``target_mflops`` per example.

    Raises:
        ValueError: if the target lies below what the fixed parts (d, n, k, ...) already cost.
    """
    low, high = math.log(1 / 256), math.log(256)
    best = config
    best_error = math.inf
    for _ in range(steps):
        mid = (low + high) / 2
        candidate = scale_widths(config, math.exp(mid))
        mflops = mflops_per_example(name, schema, candidate)
        error = abs(math.log(mflops / target_mflops))
        if error < best_error:
            best, best_error = candidate, error
        if mflops < target_mflops:
            low = mid
        else:
            high = mid
    achieved = mflops_per_example(name, schema, best)
    if abs(achieved / target_mflops - 1) > 0.25:
        raise ValueError(
            f"{name}: cannot reach {target_mflops} MFLOP/example by scaling widths (closest: {achieved:.2f}); "
            "change embedding_dim, num_layers or the number of features"
        )
    return best
