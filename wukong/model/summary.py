"""Side-by-side size and cost of every model for one configuration (``wukong models``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wukong.config import MODEL_NAMES, ModelConfig
from wukong.model.build import build_model
from wukong.model.flops import count_flops
from wukong.schema import FeatureSchema


@dataclass(frozen=True)
class ModelSummary:
    name: str
    sparse_params: int
    dense_params: int
    mflops_per_example: float

    @property
    def total_params(self) -> int:
        return self.sparse_params + self.dense_params


def summarize_models(
    schema: FeatureSchema, config: ModelConfig, names: Sequence[str] = MODEL_NAMES
) -> list[ModelSummary]:
    """Parameters and forward MFLOP/example of each model, built on the meta device (no memory used)."""
    summaries = []
    for name in names:
        model = build_model(name, schema, config, device="meta")
        counts = model.parameter_counts()
        summaries.append(ModelSummary(name, counts["sparse"], counts["dense"], count_flops(model).mflops))
    return summaries
