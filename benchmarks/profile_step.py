"""Where a training step's time goes: ``torch.profiler`` on real ``wukong train`` steps, split by phase.

The trainer (:class:`wukong.train.loop.Trainer`: TorchRec sharded tables, fused row-wise Adagrad,
the sparse-dist train pipeline, Adam, validation at each epoch end) runs in this process as
``wukong train`` runs it, on a generated all-categorical dataset (the teacher source: 10 fields, no
dense feature, ~48k training rows, so an epoch is 11 steps of 4096 as in issue 10's small-CTR protocol).
It trains three epochs: the first warms up, the second is timed without the profiler, the third is
profiled whole, so validation and checkpoints weigh per step as they do in a real run. Each event's
self time goes to the phase of its innermost label (:mod:`wukong.train.profile`), so the phases add
up to the step.

Profiled models: Wukong at the public reference's default size (``wukong.benchmark.SPEED_REFERENCE_*``:
3 layers, nF = nL = 40, k = 8, FMB MLP [512, 256], head [512, 256], d = 16, batch 4096) and Wukong
width-scaled from it to ~1 MFLOP/example. ``--compile both`` profiles each also with
``train.compile=dense``, and ``--precision both`` each also with ``train.precision=bf16``.
Beside each profile: examples/s of the training steps (the median step of the unprofiled second
epoch: validation and checkpoints excluded, like ``wukong train``'s log windows) and their share of
a matmul peak (fp32) measured right before and after it. Written to docs/benchmarks.md between this
script's markers.

    python benchmarks/profile_step.py [--rows 60000] [--compile none|dense|both] [--precision fp32|bf16|both]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

import torch
from benchmarks_doc import PRECISIONS, cpu_name, publish

from wukong.benchmark import SPEED_REFERENCE_PRESET, SPEED_REFERENCE_SETTINGS, beside_peak, peak_ratio
from wukong.config import Config, load_config
from wukong.train.profile import StepProfile, format_ops, format_profile, profile_fit

BEGIN, END = "<!-- profile_step:begin -->", "<!-- profile_step:end -->"
PRESET = SPEED_REFERENCE_PRESET
SETTINGS = [
    *SPEED_REFERENCE_SETTINGS,
    "train.epochs=3",
    "train.checkpoint_every=0",
    "train.warmup_steps=0",
    "train.patience=0",
]
COMPILE_MODES = {"none": ("none",), "dense": ("dense",), "both": ("none", "dense")}


def prepare(rows: int, folder: str) -> str:
    """The profiled dataset: 10 categorical fields, no dense feature (``wukong data prepare``)."""
    data = f"{folder}/data"
    command = [sys.executable, "-m", "wukong", "data", "prepare", "--source", "teacher", "--rows", str(rows)]
    command += ["--teacher-fields", "10", "--teacher-dense", "0", "--output", data, "--quiet"]
    subprocess.run(command, check=True)
    return data


def config(data: str, mflops: float | None, compile_mode: str, precision: str = "fp32") -> Config:
    """The reference preset, or Wukong width-scaled from it to ``mflops`` MFLOP/example."""
    from wukong.data.manifest import read_manifest
    from wukong.io import open_storage
    from wukong.model.scaling import config_for_flops

    cfg = load_config(PRESET, [*SETTINGS, f"train.compile={compile_mode}", f"train.precision={precision}"])
    if mflops is not None:
        schema = read_manifest(open_storage(data)).schema
        cfg = dataclasses.replace(cfg, model=config_for_flops("wukong", schema, cfg.model, mflops))
    return cfg


def profile_training(cfg: Config, data: str, output: str) -> tuple[StepProfile, float, float]:
    """Train ``cfg`` for its three epochs: the first warms up, the second is timed, the third profiled.

    Returns the phases, the MFLOP/example and the median seconds of the second epoch's steps. The
    rate comes from steps run *without* the profiler: recording every op costs microseconds each, so
    a profiled step of many small eager ops looks slower than it is (twice as slow at the reference
    size on one host), and a compiled one, with few ops, much less so."""
    from wukong.train.distributed import init_distributed
    from wukong.train.loop import Trainer

    trainer = Trainer(cfg, data, output, init_distributed(), resume="never")
    per_epoch, ends = trainer.steps_per_epoch, []
    trainer.step_hooks.append(lambda: ends.append(time.perf_counter()))
    profile = profile_fit(trainer, skip=2 * per_epoch, steps=per_epoch)
    # Between consecutive step ends: one step; the epoch's last also validates, which the median ignores.
    step_seconds = statistics.median(b - a for a, b in itertools.pairwise(ends[per_epoch - 1 : 2 * per_epoch]))
    return profile, trainer.flops.mflops, step_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000, help="rows generated (80%% train)")
    parser.add_argument("--mflops", type=float, default=1.0, help="the scaled Wukong's MFLOP/example target")
    parser.add_argument("--compile", choices=sorted(COMPILE_MODES), default="none", help="train.compile setting(s)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32", help="train.precision setting(s)")
    parser.add_argument("--ops", type=int, default=10, help="list the ops with the most dense time (%(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    profiles, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare(args.rows, tmp)
        for label, mflops in (("reference", None), (f"{args.mflops:g} MFLOP", args.mflops)):
            for precision, mode in itertools.product(PRECISIONS[args.precision], COMPILE_MODES[args.compile]):
                cfg = config(data, mflops, mode, precision)
                name = label + (", bf16" if precision == "bf16" else "") + (", compiled" if mode == "dense" else "")
                run = partial(profile_training, cfg, data, f"{tmp}/run{len(profiles)}")
                (profile, model_mflops, step_seconds), peak = beside_peak(run)
                rate = cfg.train.batch_size / step_seconds
                ratio = peak_ratio(model_mflops, rate, peak)
                notes.append(
                    f"{name}: {model_mflops:.2f} MFLOP/example, {rate:,.0f} examples/s in training steps "
                    f"({100 * ratio:.0f}% of a {peak:.0f} GFLOP/s matmul peak measured beside it)"
                )
                print(notes[-1], flush=True)
                profiles.append((name, profile))

    table = format_profile(profiles)
    if args.ops:
        table += f"\n\nThe {args.ops} ops with the most self time in the dense forward and backward:\n\n"
        table += format_ops(profiles, args.ops)
    batch = load_config(PRESET).train.batch_size
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {' and '.join(PRECISIONS[args.precision])}, 1 process; "
        f"`{PRESET}` preset (batch {batch}), "
        f"{args.rows * 8 // 10:,} training rows; examples/s: the median step of the second epoch, unprofiled; "
        f"phases: the third epoch, profiled. " + "; ".join(notes) + "."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
