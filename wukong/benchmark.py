"""Training throughput of the models against the machine's own matmul peak, measured in the same run.

Achieved GFLOP/s of a training step is counted as ``3 × forward FLOPs × examples/s`` (the backward
pass of a matrix product costs two more products of the same size); the ratio achieved/peak says how
close a model runs to the best dense kernel of this machine, which makes numbers from noisy or
different machines comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from wukong.config import Config, ModelConfig
from wukong.data.batch import random_batch
from wukong.model.build import build_model
from wukong.model.flops import count_flops
from wukong.schema import FeatureSchema

TRAIN_FLOPS_PER_FORWARD = 3


@dataclass(frozen=True)
class Throughput:
    model: str
    mflops_per_example: float
    dense_params: int
    batch_size: int
    examples_per_s: float
    peak_gflops: float

    @property
    def achieved_gflops(self) -> float:
        return TRAIN_FLOPS_PER_FORWARD * self.mflops_per_example * self.examples_per_s / 1e3

    @property
    def ratio(self) -> float:
        return self.achieved_gflops / self.peak_gflops


def _rate(step: Callable[[], object], seconds: float, warmup: int = 2) -> float:
    """Calls of ``step`` per second: warm up, then repeat for at least ``seconds`` (and 3 calls)."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls / (time.perf_counter() - start)


def matmul_peak_gflops(size: int = 2048, seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a square ``size × size`` fp32 matrix product: the baseline for every ratio."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2 * size**3 * _rate(lambda: torch.mm(a, b), seconds) / 1e9


def model_throughput(
    name: str, schema: FeatureSchema, config: ModelConfig, batch_size: int, seconds: float, peak_gflops: float
) -> Throughput:
    """Forward+backward examples/s of model ``name`` on one fixed random batch.

    The embedding tables are looked up but frozen: in training, TorchRec's fused optimizer updates
    only the looked-up rows inside the backward pass, whereas an unsharded collection's dense
    gradient would zero-fill every table on every step and time a memset, not the model.
    """
    model = build_model(name, schema, config)
    if model.embedding.ebc is not None:
        model.embedding.ebc.requires_grad_(False)
    batch = random_batch(schema, batch_size, torch.Generator().manual_seed(0))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(batch.dense, batch.sparse), batch.labels).backward()

    return Throughput(
        model=name,
        mflops_per_example=count_flops(model).mflops,
        dense_params=model.parameter_counts()["dense"],
        batch_size=batch_size,
        examples_per_s=batch_size * _rate(step, seconds),
        peak_gflops=peak_gflops,
    )


def run_throughput(cfg: Config, names: Sequence[str], batch_size: int, seconds: float) -> list[Throughput]:
    """Measure the matmul peak, then every model of ``names`` as configured."""
    peak = matmul_peak_gflops(seconds=seconds)
    schema = cfg.data.synthetic_schema()
    return [model_throughput(name, schema, cfg.model, batch_size, seconds, peak) for name in names]


def format_table(results: Sequence[Throughput], fmt: str = "simple") -> str:
    from tabulate import tabulate

    rows = [
        [
            r.model,
            f"{r.mflops_per_example:.2f}",
            f"{r.dense_params / 1e6:.2f}",
            r.batch_size,
            f"{r.examples_per_s:,.0f}",
            f"{r.achieved_gflops:.1f}",
            f"{r.peak_gflops:.1f}",
            f"{100 * r.ratio:.0f}%",
        ]
        for r in results
    ]
    headers = ["model", "MFLOP/ex", "dense Mparams", "batch", "examples/s", "GFLOP/s", "matmul peak", "of peak"]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
