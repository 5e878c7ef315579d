"""Examples/s of full training steps (input distribution, sharded look-ups, forward, backward, fused
and dense optimizers) with 1 and 2 processes on this machine, and the model FLOP utilisation (MFU).

Each configuration runs ``wukong train`` on a Criteo-shaped synthetic dataset; the rate is the median
of history.jsonl's logging windows after the first (warm-up) one, so start-up, validation and
checkpoints are excluded. MFU = 3 × analytic forward FLOPs × examples/s ÷ the fp32 matmul peak of
the whole machine, measured in the same run. Written to docs/benchmarks.md between this script's markers.

    python benchmarks/train_throughput.py [--rows 300000] [--steps 80] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from benchmarks_doc import cpu_name, publish
from tabulate import tabulate

from wukong.benchmark import matmul_peak_gflops

BEGIN, END = "<!-- train_throughput:begin -->", "<!-- train_throughput:end -->"
CASES = [  # (label, model, nproc, extra flags)
    ("Wukong, 1 process", "wukong", 1, []),
    ("Wukong, 2 processes", "wukong", 2, []),
    ("Wukong, 2 processes, no pipeline", "wukong", 2, ["--no-pipeline"]),
    ("DLRM, 2 processes", "dlrm", 2, []),
]


def run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "wukong", *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    peak = matmul_peak_gflops(seconds=3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/data"
        run("data", "prepare", "--source", "synthetic", "--rows", str(args.rows), "--output", data, "--quiet")
        for label, model, nproc, extra in CASES:
            out = Path(tmp) / label.replace(" ", "_").replace(",", "")
            run(
                "train",
                "--data",
                data,
                "--output",
                str(out),
                "--config",
                "default",
                "--model",
                model,
                "--nproc",
                str(nproc),
                "--batch-size",
                str(args.batch_size),
                "--max-steps",
                str(args.steps),
                "--log-every",
                "10",
                "--checkpoint-every",
                "0",
                "--warmup-steps",
                "10",
                *extra,
            )
            card = json.loads((out / "model_card.json").read_text())
            windows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
            rates = [w["examples_per_s"] for w in windows if "loss" in w and w["step"] > 10]
            rate = statistics.median(rates)
            mfu = 3 * card["mflops_per_example"] * 1e6 * rate / (peak * 1e9)
            rows.append([label, f"{card['mflops_per_example']:.2f}", f"{rate:,.0f}", f"{100 * mfu:.1f}%"])
            print(rows[-1], flush=True)
    table = tabulate(
        rows, headers=["configuration", "MFLOP/example", "examples/s", "MFU"], tablefmt="github", disable_numparse=True
    )
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()} ({torch.get_num_threads()} cores), default preset "
        f"(13 dense + 26 sparse features, d=128), global batch {args.batch_size}, fp32, gloo. "
        f"Machine fp32 matmul peak {peak:.1f} GFLOP/s (same run)."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
