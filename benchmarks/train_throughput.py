"""Examples/s of full training steps (input distribution, sharded look-ups, forward, backward, fused
and dense optimizers) with 1 and 2 processes on this machine, and the model FLOP utilisation (MFU).

Each configuration runs ``wukong train`` on a synthetic dataset; the rate is the median of
history.jsonl's logging windows after the first (warm-up) one, so start-up, validation and
checkpoints are excluded. MFU = 3 × analytic forward FLOPs × examples/s ÷ the fp32 matmul peak of
the whole machine, taken as the best of short ``torch.mm`` bursts right before and right after that
configuration's run (:func:`wukong.benchmark.beside_peak`), so each ratio compares with the machine
as it was during its own run. Written to docs/benchmarks.md between this script's markers.

Configurations: the default preset (Criteo-shaped: 13 dense + 26 sparse features, d = 128) with 1
and 2 processes, and Wukong at the public reference's default size
(``wukong.benchmark.SPEED_REFERENCE_*``, batch 4096, on 10 categorical fields), eager and with
``train.compile=dense``, and both again with ``train.precision=bf16`` (the dense arch's products in
bf16 under autocast; AMX tiles make them fast on recent Intel CPUs); beside the 1-process runs of both
presets, the same with ``train.malloc=system`` (glibc's allocator defaults: the before of ``retain``).
The bf16 rows have a second share: of a bf16 ``torch.mm`` peak measured beside them the same way,
so each run is held against the peak of the precision it computes in, while its share of the fp32
peak compares throughput with the fp32 rows (and with the fp32 reference implementation).

    python benchmarks/train_throughput.py [--rows 300000] [--steps 80] [--only reference] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from benchmarks_doc import cpu_name, publish
from tabulate import tabulate

from wukong.benchmark import (
    SPEED_REFERENCE_PRESET,
    SPEED_REFERENCE_SETTINGS,
    beside_peak,
    matmul_gflops,
    peak_ratio,
)

BEGIN, END = "<!-- train_throughput:begin -->", "<!-- train_throughput:end -->"
DEFAULT = ["--config", "default"]
BF16, COMPILED = ["--precision", "bf16"], ["--compile", "dense"]
SYSTEM_MALLOC = ["--set", "train.malloc=system"]  # the before of train.malloc's default, retain
REFERENCE = ["--config", SPEED_REFERENCE_PRESET, *(f for s in SPEED_REFERENCE_SETTINGS for f in ("--set", s))]
CASES = [  # (label, dataset, model, nproc, flags)
    ("Wukong, 1 process", "criteo", "wukong", 1, DEFAULT),
    ("Wukong, 1 process, train.malloc=system", "criteo", "wukong", 1, [*DEFAULT, *SYSTEM_MALLOC]),
    ("Wukong, 2 processes", "criteo", "wukong", 2, DEFAULT),
    ("Wukong, 2 processes, no pipeline", "criteo", "wukong", 2, [*DEFAULT, "--no-pipeline"]),
    ("DLRM, 2 processes", "criteo", "dlrm", 2, DEFAULT),
    ("Wukong reference config, 1 process", "reference", "wukong", 1, REFERENCE),
    ("Wukong reference config, 1 process, train.malloc=system", "reference", "wukong", 1, [*REFERENCE, *SYSTEM_MALLOC]),
    ("Wukong reference config, 1 process, compiled", "reference", "wukong", 1, [*REFERENCE, *COMPILED]),
    ("Wukong reference config, 1 process, bf16", "reference", "wukong", 1, [*REFERENCE, *BF16]),
    ("Wukong reference config, 1 process, bf16, compiled", "reference", "wukong", 1, [*REFERENCE, *BF16, *COMPILED]),
]


bf16_gflops = partial(matmul_gflops, dtype=torch.bfloat16)


def run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "wukong", *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])


def prepare(kind: str, rows: int, folder: str) -> str:
    """``criteo``: the synthetic Criteo-shaped source; ``reference``: 10 categorical fields, no dense one."""
    source = ["--source", "synthetic"]
    if kind == "reference":
        source = ["--source", "teacher", "--teacher-fields", "10", "--teacher-dense", "0"]
    run("data", "prepare", *source, "--rows", str(rows), "--output", folder, "--quiet")
    return folder


def train(data: str, out: Path, kind: str, model: str, nproc: int, flags: list[str], args: argparse.Namespace) -> float:
    """Median examples/s of the logging windows after step 10; the run's model card is in ``out``."""
    batch = ["--batch-size", str(args.batch_size)] if kind == "criteo" else []  # the reference: its preset's
    run(
        "train",
        *["--data", data, "--output", str(out), "--model", model, "--nproc", str(nproc), *flags, *batch],
        *["--max-steps", str(args.steps), "--log-every", "10", "--checkpoint-every", "0", "--warmup-steps", "10"],
        *["--validate-every", "0", "--epochs", "1000"],
    )
    windows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return statistics.median(w["examples_per_s"] for w in windows if "loss" in w and w["step"] > 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of each generated dataset")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=2048, help="global batch of the default-preset cases")
    parser.add_argument("--only", help="run the configurations whose label contains this (e.g. reference)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or args.only.lower() in c[0].lower()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        datasets = {kind: prepare(kind, args.rows, f"{tmp}/{kind}") for kind in sorted({c[1] for c in cases})}
        for label, kind, model, nproc, flags in cases:
            out = Path(tmp) / label.replace(" ", "_").replace(",", "")
            measure = partial(train, datasets[kind], out, kind, model, nproc, flags, args)
            bf16_peak = None
            if "bf16" in flags:  # the bf16 peak beside the run, inside the fp32 one
                (rate, bf16_peak), peak = beside_peak(partial(beside_peak, measure, burst=bf16_gflops))
            else:
                rate, peak = beside_peak(measure)
            mflops = json.loads((out / "model_card.json").read_text())["mflops_per_example"]
            mfu = peak_ratio(mflops, rate, peak)
            row = [label, f"{mflops:.2f}", f"{rate:,.0f}", f"{peak:.1f}", f"{100 * mfu:.1f}%"]
            if bf16_peak:
                row += [f"{bf16_peak:.0f}", f"{100 * peak_ratio(mflops, rate, bf16_peak):.1f}%"]
            rows.append(row + [""] * (7 - len(row)))
            print(rows[-1], flush=True)
    headers = ["configuration", "MFLOP/example", "examples/s", "fp32 peak beside it", "of fp32 peak"]
    headers += ["bf16 peak beside it", "of bf16 peak"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()} ({torch.get_num_threads()} cores), gloo; "
        f"default preset (13 dense + 26 sparse features, d=128) at global batch {args.batch_size}, reference "
        f"config (`small-ctr`, 10 categorical fields, d=16) at 4096; {args.steps} steps, {args.rows:,} rows. "
        "Matmul peaks: GFLOP/s of the best 2048² `torch.mm` burst right before or after each run, fp32 "
        "for every run, bf16 too for the bf16 runs; MFU = 3 × forward FLOPs × examples/s over the peak."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
