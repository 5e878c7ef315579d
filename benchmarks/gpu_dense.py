"""The dense part alone on an accelerator: training-step rate, achieved TFLOP/s and MFU of every arch.

Each model family (``wukong``, ``dlrm``, ``dcnv2``, ``finalmlp``) is built with
:func:`wukong.model.build.build_arch` on the default preset's shape (n = 27 rows of d = 128: 26 sparse
features and one dense-feature embedding) and width-scaled to each target MFLOP/example by the
family's own rule (:func:`wukong.model.scaling.scaled_arch_config`). Its input is a random
``(B, n, d)`` tensor standing in for the embedding layer's output (its gradient is computed, as
training's look-ups need it); no TorchRec, so this runs wherever torch does.

A step is forward, ``BCEWithLogitsLoss``, backward and Adam (fused on CUDA) over the arch's
parameters, in each mode: ``fp32`` (eager, no TF32), ``bf16`` (autocast, fp32 master weights),
``bf16-compile`` (the same under ``torch.compile``), and ``fp32-compile`` on request. Timing: CUDA
events around chunks of steps (``perf_counter`` on CPU) after warm-up steps, the median chunk rate;
in compiled modes the warm-up's excess over that rate is the compile time, reported on its own.

Achieved FLOP/s = 3 × the analytic forward FLOPs of a batch × steps/s (backward ≈ 2 × forward).
MFU divides it by the device's dense bf16 peak from its datasheet (:data:`BF16_PEAK_TFLOPS`);
beside it, "of measured mm" divides it by the best square ``torch.mm`` of the mode's dtype (bf16 for
the bf16 modes, fp32 for the fp32 ones) of this run, measured before the run and again before every
model family, so that each ratio compares with a peak of the same session and like with like.

Results go to ``--out`` (JSON, rewritten after every point, so a run cut short keeps what it
measured) and, with ``--write``, into docs/benchmarks.md. On a remote GPU machine whose working
tree does not come back, write the JSON there and render it here::

    python benchmarks/gpu_dense.py --device cuda --out $OUT/gpu.json        # on the GPU machine
    python benchmarks/gpu_dense.py --render gpu.json --write                # here: the table into the doc
    python benchmarks/gpu_dense.py --device cpu --mflops 0.3 --seconds 0.5  # a smoke test on CPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from benchmarks_doc import cpu_name, write_section

from wukong.config import MODEL_NAMES, ModelConfig
from wukong.model.build import build_arch
from wukong.model.flops import count_flops
from wukong.model.scaling import scaled_arch_config

BEGIN, END = "<!-- gpu_dense:begin -->", "<!-- gpu_dense:end -->"
NUM_FEATURES, DENSE_ROWS = 27, 1  # the default preset: 26 sparse features + 1 dense-feature embedding
TRAIN_FLOPS_PER_FORWARD = 3
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s; the first name that is
# part of torch.cuda.get_device_name() wins (so "H100 PCIe" before "H100"; GH200 matches "H200").
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}
DEFAULTS = {  # per device: targets (MFLOP/example), batch, measured-peak matmul size
    "cuda": {"mflops": (1.0, 10.0, 100.0, 1000.0), "batch": 8192, "peak_size": 8192},
    "cpu": {"mflops": (0.3, 1.0), "batch": 256, "peak_size": 256},  # bf16 mm is emulated (slow) on many CPUs
}


@dataclass(frozen=True)
class Mode:
    name: str
    bf16: bool  # autocast to bfloat16 (weights and optimizer stay fp32)
    compiled: bool  # torch.compile of the arch

    @property
    def dtype(self) -> str:
        """The dtype of its matrix products (the measured peak it is compared with)."""
        return "bfloat16" if self.bf16 else "float32"


MODES = {
    m.name: m
    for m in (
        Mode("fp32", bf16=False, compiled=False),
        Mode("bf16", bf16=True, compiled=False),
        Mode("bf16-compile", bf16=True, compiled=True),
        Mode("fp32-compile", bf16=False, compiled=True),
    )
}
DEFAULT_MODES = ("fp32", "bf16", "bf16-compile")


def spec_peak_tflops(device: torch.device) -> float | None:
    """The datasheet's dense bf16 peak of ``device``, or None when it is not in :data:`BF16_PEAK_TFLOPS`."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


class Clock:
    """Seconds a piece of work takes on ``device``: CUDA events around it (the queue drained first),
    ``perf_counter`` on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def time(self, work: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            work()
            return time.perf_counter() - start
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def calls_per_second(clock: Clock, call: Callable[[], object], seconds: float) -> float:
    """Median rate over chunks of calls (each about a fifth of ``seconds``; at least 3 chunks)."""
    chunk = max(1, math.ceil(seconds / 5 / max(clock.time(call), 1e-9)))

    def run_chunk() -> None:
        for _ in range(chunk):
            call()

    rates, total = [], 0.0
    while len(rates) < 3 or total < seconds:
        elapsed = clock.time(run_chunk)
        rates.append(chunk / elapsed)
        total += elapsed
    return statistics.median(rates)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: int, seconds: float) -> float:
    """TFLOP/s of a square ``torch.mm`` of ``size`` in ``dtype``: the best dense kernel, measured now."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up (cuBLAS handle, kernel choice)
    return 2 * size**3 * calls_per_second(Clock(device), lambda: torch.mm(a, b), seconds) / 1e12


@dataclass
class Point:
    """One model at one size in one mode; ``mfu_spec``: of the datasheet's bf16 peak, ``mfu_measured``:
    of the run's best measured ``torch.mm`` in the mode's dtype."""

    model: str
    target_mflops: float
    mflops_per_example: float
    dense_params: int
    mode: str
    batch: int
    examples_per_s: float | None = None
    tflops: float | None = None
    compile_s: float | None = None
    max_memory_gib: float | None = None
    mfu_spec: float | None = None
    mfu_measured: float | None = None
    error: str | None = None


def train_step(
    arch: torch.nn.Module, dim: int, mode: Mode, compile_mode: str, batch: int, device: torch.device
) -> Callable[[], None]:
    """A closure that runs one training step of ``arch`` on a fixed random ``(batch, n, dim)`` input."""
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, NUM_FEATURES, dim, device=device, generator=generator, requires_grad=True)
    labels = torch.randint(0, 2, (batch,), device=device, generator=generator).float()
    model = torch.compile(arch, dynamic=False, mode=compile_mode) if mode.compiled else arch
    optimizer = torch.optim.Adam(arch.parameters(), lr=1e-4, fused=device.type == "cuda")
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        x.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.bf16):
            loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()

    return step


def measure(point: Point, config: ModelConfig, args: argparse.Namespace, device: torch.device) -> None:
    """Fill ``point``'s rate, TFLOP/s, compile time and peak memory."""
    mode, warmup = MODES[point.mode], args.warmup
    clock = Clock(device)
    if mode.compiled:
        torch._dynamo.reset()  # every point compiles afresh (and stays clear of the recompile limit)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    with torch.device(device):
        arch = build_arch(point.model, NUM_FEATURES, config, DENSE_ROWS)
    flops_per_batch = count_flops(arch).total(point.batch)
    step = train_step(arch, config.embedding_dim, mode, args.compile_mode, point.batch, device)
    warm = clock.time(lambda: [step() for _ in range(warmup)])
    steps_per_s = calls_per_second(clock, step, args.seconds)
    point.examples_per_s = point.batch * steps_per_s
    point.tflops = TRAIN_FLOPS_PER_FORWARD * flops_per_batch * steps_per_s / 1e12
    point.compile_s = max(0.0, warm - warmup / steps_per_s) if mode.compiled else None
    if device.type == "cuda":
        point.max_memory_gib = torch.cuda.max_memory_allocated(device) / 2**30


def with_mfu(points: Sequence[Point], spec: float | None, measured: dict[str, float]) -> None:
    for p in points:
        if p.tflops is not None:
            p.mfu_spec = p.tflops / spec if spec else None
            p.mfu_measured = p.tflops / measured[MODES[p.mode].dtype]


def save(path: Path | None, report: dict) -> None:
    """Write ``report`` to ``path`` atomically (a reader never sees half a file)."""
    if path is None:
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=1))
    os.replace(partial, path)


def sized_configs(models: Sequence[str], targets: Sequence[float]) -> dict[tuple[str, float], ModelConfig]:
    """The default preset's model settings grown to each target by each family's rule.

    Raises:
        ValueError: a target the rule cannot reach.
    """
    base = ModelConfig()
    return {(m, t): scaled_arch_config(m, NUM_FEATURES, base, t, DENSE_ROWS) for m in models for t in targets}


def run(args: argparse.Namespace, device: torch.device, configs: dict[tuple[str, float], ModelConfig]) -> dict:
    """Measure every (model, size, mode) point of ``configs``; the report as saved to ``--out``."""
    spec = spec_peak_tflops(device)
    dtypes = sorted({MODES[m].dtype for m in args.modes} | {"bfloat16"})
    report = {
        "benchmark": "gpu_dense",
        "date": datetime.date.today().isoformat(),
        "device": {"type": device.type, "name": device_name(device), "bf16_peak_tflops_spec": spec},
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "compile_mode": args.compile_mode,
        "batch": args.batch,
        "seconds": args.seconds,
        "warmup_steps": args.warmup,
        "num_features": NUM_FEATURES,
        "embedding_dim": ModelConfig().embedding_dim,
        "peak_size": args.peak_size,
        "peak_measurements_tflops": {dtype: [] for dtype in dtypes},  # per dtype, in the order taken
        "measured_peak_tflops": {},  # per dtype: the best of its measurements
        "complete": False,
        "points": [],
    }
    points: list[Point] = []

    def remeasure_peaks() -> None:
        for dtype, taken in report["peak_measurements_tflops"].items():
            taken.append(matmul_peak_tflops(device, getattr(torch, dtype), args.peak_size, args.peak_seconds))
            report["measured_peak_tflops"][dtype] = max(taken)

    def record() -> None:
        with_mfu(points, spec, report["measured_peak_tflops"])
        report["points"] = [asdict(p) for p in points]
        save(args.out, report)

    remeasure_peaks()
    print(f"{device_name(device)}: {measured_peaks(report)}", flush=True)
    for name in args.models:
        remeasure_peaks()
        for target in args.mflops:
            config = configs[(name, target)]
            with torch.device("meta"):
                arch = build_arch(name, NUM_FEATURES, config, DENSE_ROWS)
            mflops, params = count_flops(arch).mflops, sum(p.numel() for p in arch.parameters())
            for mode in args.modes:
                point = Point(name, target, mflops, params, mode, args.batch)
                points.append(point)
                try:
                    measure(point, config, args, device)
                except Exception as error:  # OOM, a compiler failure: record it, go on with the next point
                    point.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
                record()
                print(" | ".join(row(point)), flush=True)
    report["complete"] = True
    record()
    return report


def measured_peaks(report: dict) -> str:
    return ", ".join(
        f"{dtype} {peak:.3g} TFLOP/s (best of {len(report['peak_measurements_tflops'][dtype])})"
        for dtype, peak in report["measured_peak_tflops"].items()
    )


def _percent(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "n/a"


def row(p: Point) -> list[str]:
    if p.error:
        return [p.model, f"{p.mflops_per_example:.1f}", p.mode, f"failed: {p.error}", "", "", "", "", ""]
    return [
        p.model,
        f"{p.mflops_per_example:.1f}",
        p.mode,
        f"{p.examples_per_s:,.0f}",
        f"{p.tflops:.3g}",
        _percent(p.mfu_spec),
        _percent(p.mfu_measured),
        f"{p.compile_s:.1f}" if p.compile_s is not None else "",
        f"{p.max_memory_gib:.2f}" if p.max_memory_gib is not None else "",
    ]


HEADERS = [
    "model",
    "MFLOP/ex",
    "mode",
    "examples/s",
    "TFLOP/s",
    "MFU (bf16 datasheet)",
    "of measured mm",
    "compile s",
    "max GiB",
]


def render(reports: Sequence[dict]) -> str:
    """The Markdown header and table of one or more reports (e.g. one run per model family)."""
    from tabulate import tabulate

    rows = [row(Point(**p)) for r in reports for p in r["points"]]
    table = tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)
    lines = []
    for r in reports:
        spec = r["device"]["bf16_peak_tflops_spec"]
        done = "" if r["complete"] else f" (cut short: {len(r['points'])} points)"
        lines.append(
            f"Measured {r['date']} on {r['device']['name']}{done}: torch {r['torch']}"
            + (f", CUDA {r['cuda']}" if r["cuda"] and r["device"]["type"] == "cuda" else "")
            + f", batch {r['batch']}, {r['seconds']:g} s per point after {r['warmup_steps']} warm-up steps, "
            f"compile mode `{r['compile_mode']}`. Datasheet bf16 peak: "
            + (f"{spec:g} TFLOP/s" if spec else "unknown")
            + f". Measured {r['peak_size']}² `torch.mm` peaks, same run: {measured_peaks(r)}."
        )
    return "\n\n".join(lines) + "\n\n" + table


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when visible, else cpu")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated (%(default)s)")
    parser.add_argument("--mflops", help="comma-separated targets, MFLOP/example (cuda: 1,10,100,1000; cpu: 0.3,1)")
    parser.add_argument("--batch", type=int, help="examples per step (cuda: 8192; cpu: 256)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per point (%(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per point (%(default)s)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (e.g. max-autotune)")
    parser.add_argument("--peak-size", type=int, help="measured-peak matmul size (cuda: 8192; cpu: 256)")
    parser.add_argument("--peak-seconds", type=float, default=0.5, help="per peak measurement (%(default)s)")
    parser.add_argument("--out", type=Path, help="write the results here as JSON (after every point)")
    parser.add_argument("--write", action="store_true", help="put the table into docs/benchmarks.md")
    parser.add_argument("--render", type=Path, nargs="+", metavar="JSON", help="no measuring: table of these")
    return parser.parse_args(argv), parser


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> torch.device:
    """Fill device-dependent defaults; a usage error (exit 2) names the flag and what is valid."""
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible here; use --device cpu")
    defaults = DEFAULTS[args.device]
    args.models = args.models.split(",")
    args.modes = args.modes.split(",")
    for flag, names, valid in (("--models", args.models, MODEL_NAMES), ("--modes", args.modes, tuple(MODES))):
        if unknown := [n for n in names if n not in valid]:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(valid)}")
    try:
        args.mflops = [float(v) for v in args.mflops.split(",")] if args.mflops else list(defaults["mflops"])
    except ValueError:
        parser.error(f"--mflops: expected comma-separated numbers, got {args.mflops!r}")
    args.batch = args.batch or defaults["batch"]
    args.peak_size = args.peak_size or defaults["peak_size"]
    positive = {"--batch": args.batch, "--seconds": args.seconds, "--warmup": args.warmup}
    positive["--peak-size"] = args.peak_size
    for flag, value in positive.items():
        if value <= 0:
            parser.error(f"{flag} must be > 0, got {value}")
    if args.out and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    return torch.device(args.device)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure (or ``--render``) and print the table; 1 when a point failed, 2 on bad usage."""
    args, parser = parse_args(argv)
    if args.render:
        try:
            reports = [json.loads(path.read_text()) for path in args.render]
        except (OSError, ValueError) as error:
            parser.error(f"--render: cannot read a report: {error}")
    else:
        device = validate(args, parser)
        try:  # sized first: an unreachable target fails before any time is spent
            configs = sized_configs(args.models, args.mflops)
        except ValueError as error:
            parser.error(f"--mflops: {error}")
        reports = [run(args, device, configs)]
    text = render(reports)
    print(f"\n{text}")
    if args.write:
        write_section(BEGIN, END, text)
    return 1 if any(p["error"] for r in reports for p in r["points"]) else 0


if __name__ == "__main__":
    sys.exit(main())
