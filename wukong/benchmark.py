"""Training throughput of the models against the machine's own matmul peak, measured beside each point.

Achieved GFLOP/s of a training step is counted as ``3 × forward FLOPs × examples/s`` (the backward
pass of a matrix product costs two more products of the same size); the ratio achieved/peak says how
close a model runs to the best dense kernel of this machine, which makes numbers from noisy or
different machines comparable.

The peak is not measured once per run: on a shared machine it drifts by tens of percent within
minutes, and a ratio to a peak taken in a quieter (or busier) moment than its point is meaningless
(it can exceed 100%). Every point is therefore timed in slices with a short matmul burst before,
between and after them (:func:`rate_beside_peak`), or, for a point that cannot be sliced (a
subprocess), between bursts right before and right after it (:func:`beside_peak`); its peak is the
best of those bursts, so a ratio compares like with like.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import torch

from wukong.config import Config, ModelConfig
from wukong.data.batch import random_batch
from wukong.model.build import build_model
from wukong.model.flops import count_flops
from wukong.schema import FeatureSchema
from wukong.train.precision import autocast

TRAIN_FLOPS_PER_FORWARD = 3
T = TypeVar("T")

# The public reference's default WuKong size as issue 13 timed it (5.07 MFLOP/example: 3 layers of
# nF = nL = 40 in the paper's layer form, at the `small-ctr` preset's widths, d and batch), without
# that preset's tuned shape and training recipe (dropout, BatchNorm, the FMB's ReLU, every table in
# the fused optimizer), so step rates stay comparable with the measurements made before the recipe.
SPEED_REFERENCE_PRESET = "small-ctr"
SPEED_REFERENCE_SETTINGS = (
    "model.layer_form=expand",
    "model.num_layers=3",
    "model.num_fmb_embeddings=40",
    "model.num_lcb_embeddings=40",
    "model.fmb_activation=none",
    "model.mlp_norm=none",
    "model.mlp_dropout=0.0",
    "model.layer_dropout=0.0",
    "train.data_parallel_max_rows=128",
)


@dataclass(frozen=True)
class Throughput:
    model: str
    mflops_per_example: float
    dense_params: int
    batch_size: int
    examples_per_s: float
    peak_gflops: float

    peak_gflops: float  # the best matmul burst measured beside this point (:func:`rate_beside_peak`)

    @property
    def achieved_gflops(self) -> float:
        return achieved_gflops(self.mflops_per_example, self.examples_per_s)

    @property
    def ratio(self) -> float:
        return self.achieved_gflops / self.peak_gflops


def achieved_gflops(mflops_per_example: float, examples_per_s: float) -> float:
    """GFLOP/s of training steps: ``3 × forward MFLOP/example × examples/s / 1000``."""
    return TRAIN_FLOPS_PER_FORWARD * mflops_per_example * examples_per_s / 1e3


def peak_ratio(mflops_per_example: float, examples_per_s: float, peak_gflops: float) -> float:
    """Achieved training GFLOP/s over a matmul peak measured beside the point (model FLOP utilisation)."""
    return achieved_gflops(mflops_per_example, examples_per_s) / peak_gflops


def _rate(step: Callable[[], object], seconds: float, warmup: int = 2) -> float:
    """Calls of ``step`` per second: warm up, then repeat for at least ``seconds`` (and 3 calls)."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls / (time.perf_counter() - start)


PEAK_SIZE = 2048  # the peak's square matrices: large enough for the best kernel, 0.05-0.1 s per product on 2 cores


def matmul_gflops(size: int = PEAK_SIZE, seconds: float = 0.3, dtype: torch.dtype = torch.float32) -> float:
    """One burst: GFLOP/s of ``size × size`` matrix products (``2·size³`` FLOPs each) for about ``seconds``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2 * size**3 * _rate(lambda: torch.mm(a, b), seconds, warmup=1) / 1e9


def beside_peak(
    measure: Callable[[], T], bursts: int = 2, burst: Callable[[], float] = matmul_gflops
) -> tuple[T, float]:
    """``(measure(), peak)``: the peak is the best of ``bursts`` matmul bursts right before and as many
    right after the measurement (for points that cannot be sliced, such as a training subprocess)."""
    before = [burst() for _ in range(bursts)]
    value = measure()
    return value, max(before + [burst() for _ in range(bursts)])


def rate_beside_peak(
    step: Callable[[], object], seconds: float, slices: int = 3, burst: Callable[[], float] = matmul_gflops
) -> tuple[float, float]:
    """``(calls/s of step, peak GFLOP/s)`` measured side by side.

    ``step`` is warmed up, then timed in ``slices`` slices of ``seconds / slices`` each (at least
    one call per slice); a burst of ``burst`` runs before the first slice, between slices and after
    the last. The rate is all calls over all sliced time; the peak is the best burst, so it was
    taken while the machine was as busy as during the point, never in another minute of the run."""
    step()
    step()
    peaks, calls, elapsed = [burst()], 0, 0.0
    for _ in range(slices):
        start = time.perf_counter()
        while True:
            step()
            calls += 1
            if time.perf_counter() - start >= seconds / slices:
                break
        elapsed += time.perf_counter() - start
        peaks.append(burst())
    return calls / elapsed, max(peaks)


def training_step(
    name: str,
    schema: FeatureSchema,
    config: ModelConfig,
    batch_size: int,
    compile_arch: bool = False,
    precision: str = "fp32",
) -> tuple[Callable[[], None], torch.nn.Module]:
    """``(step, model)``: one forward+backward of model ``name`` on a fixed random batch per call.

    The embedding tables are looked up but frozen: in training, TorchRec's fused optimizer updates
    only the looked-up rows inside the backward pass, whereas an unsharded collection's dense
    gradient would zero-fill every table on every step and time a memset, not the model. With
    ``compile_arch`` the interaction arch runs under ``torch.compile`` (as ``train.compile=dense``),
    compiled by the first call. With ``precision="bf16"`` the arch runs under bf16 autocast
    (``train.precision=bf16``)."""
    model = build_model(name, schema, config)
    if model.embedding.ebc is not None:
        model.embedding.ebc.requires_grad_(False)
    if compile_arch:
        model.arch.compile()
    batch = random_batch(schema, batch_size, torch.Generator().manual_seed(0))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(precision, "cpu"):
            logits = model(batch.dense, batch.sparse).float()
        loss_fn(logits, batch.labels).backward()

    return step, model


def model_throughput(
    name: str,
    schema: FeatureSchema,
    config: ModelConfig,
    batch_size: int,
    seconds: float,
    compile_arch: bool = False,
    burst: Callable[[], float] | None = None,
    precision: str = "fp32",
) -> Throughput:
    """Forward+backward examples/s of model ``name`` on one fixed random batch
    (:func:`training_step`), with the matmul peak measured beside it (:func:`rate_beside_peak`;
    ``burst`` takes one peak sample). With ``precision="bf16"`` the peak beside it is a bf16
    matmul's, so the ratio holds the point against the best kernel of the precision it computes in.
    """
    step, model = training_step(name, schema, config, batch_size, compile_arch, precision)
    if burst is None:
        burst = partial(matmul_gflops, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
    rate, peak = rate_beside_peak(step, seconds, burst=burst)
    return Throughput(
        model=name + ("+bf16" if precision == "bf16" else "") + ("+compile" if compile_arch else ""),
        mflops_per_example=count_flops(model).mflops,
        dense_params=model.parameter_counts()["dense"],
        batch_size=batch_size,
        examples_per_s=batch_size * rate,
        peak_gflops=peak,
    )


def run_throughput(cfg: Config, names: Sequence[str], batch_size: int, seconds: float) -> list[Throughput]:
    """Every model of ``names`` as configured, each beside its own matmul peak."""
    schema = cfg.data.synthetic_schema()
    return [model_throughput(name, schema, cfg.model, batch_size, seconds) for name in names]


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
