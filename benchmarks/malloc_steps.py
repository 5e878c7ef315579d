"""Training steps with ``train.malloc=retain`` against glibc's defaults, paired in the same run.

The setting is process-wide, so each variant lives in its own worker process: for every point (a
model width-scaled to a FLOP budget, as in ``model_throughput.py``), two workers build the same
model and batch (:func:`wukong.benchmark.training_step`), one with ``train.malloc=system`` and one
with ``retain``, and then take turns: in each of ``--rounds`` rounds each runs steps for
``--seconds``, in alternating order, and reports its steps, wall and CPU time and page faults. A
round's ratio is retain's rate over system's in that round, so both are held to the same minute of
this shared machine; the table shows the median ratio and each variant's median rate and page faults
per step. Written to docs/benchmarks.md between this script's markers.

    python benchmarks/malloc_steps.py [--models wukong dlrm] [--sizes 1 10 50] [--rounds 7] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from benchmarks_doc import cpu_name, publish
from tabulate import tabulate

from wukong.benchmark import training_step
from wukong.config import MODEL_NAMES, load_config
from wukong.malloc import configure_malloc
from wukong.model.flops import count_flops
from wukong.model.scaling import config_for_flops

BEGIN, END = "<!-- malloc_steps:begin -->", "<!-- malloc_steps:end -->"
SIZES_MFLOPS = (1.0, 10.0, 50.0)
VARIANTS = ("system", "retain")


def serve(mode: str, name: str, mflops: float, batch_size: int) -> None:
    """Worker: build the step under ``train.malloc=mode``, then answer ``run SECONDS`` lines on stdin."""
    configure_malloc(mode)
    cfg = load_config("default", ["data.cardinality=10000"])
    schema = cfg.data.synthetic_schema()
    step, model = training_step(name, schema, config_for_flops(name, schema, cfg.model, mflops), batch_size)
    for _ in range(5):
        step()
    print(json.dumps({"mflops": count_flops(model).mflops}), flush=True)
    for line in sys.stdin:
        seconds = float(line.split()[1])
        usage, wall, cpu, steps = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - wall < seconds:
            step()
            steps += 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - usage.ru_minflt
        report = dict(steps=steps, wall=time.perf_counter() - wall, cpu=time.process_time() - cpu, faults=faults)
        print(json.dumps(report), flush=True)


class Worker:
    def __init__(self, mode: str, name: str, mflops: float, batch_size: int) -> None:
        command = [sys.executable, __file__, "--worker", mode, name, str(mflops), str(batch_size)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.mflops = json.loads(self._read())["mflops"]

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args[3:]} died (exit {self.process.wait()})")
        return line

    def run(self, seconds: float) -> dict:
        self.process.stdin.write(f"run {seconds}\n")
        self.process.stdin.flush()
        return json.loads(self._read())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def measure(name: str, mflops: float, batch_size: int, rounds: int, seconds: float) -> list[str]:
    workers = {mode: Worker(mode, name, mflops, batch_size) for mode in VARIANTS}
    reports: dict[str, list[dict]] = {mode: [] for mode in VARIANTS}
    try:
        for i in range(rounds):
            for mode in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
                reports[mode].append(workers[mode].run(seconds))
    finally:
        for worker in workers.values():
            worker.close()

    def rate(report: dict) -> float:
        return batch_size * report["steps"] / report["wall"]

    ratios = [rate(r) / rate(s) for s, r in zip(reports["system"], reports["retain"], strict=True)]
    row = [name, f"{workers['retain'].mflops:.2f}", str(batch_size)]
    for mode in VARIANTS:
        row.append(f"{statistics.median(rate(r) for r in reports[mode]):,.0f}")
    for mode in VARIANTS:
        row.append(f"{statistics.median(r['faults'] / r['steps'] for r in reports[mode]):,.0f}")
    return [*row, f"{statistics.median(ratios):.2f}x", f"{min(ratios):.2f}-{max(ratios):.2f}x"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, name, mflops, batch_size = sys.argv[2:6]
        return serve(mode, name, float(mflops), int(batch_size))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--sizes", nargs="+", type=float, default=list(SIZES_MFLOPS), help="MFLOP/example targets")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per variant per round")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        for mflops in args.sizes:
            rows.append(measure(name, mflops, args.batch_size, args.rounds, args.seconds))
            print(rows[-1], flush=True)
    headers = ["model", "MFLOP/ex", "batch", "examples/s, system", "examples/s, retain"]
    headers += ["page faults/step, system", "page faults/step, retain", "retain vs system", "range over rounds"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, fp32: forward and backward on one fixed batch, the tables frozen (as in the "
        f"model benchmark); {args.rounds} rounds of {args.seconds:g} s per variant, alternating; medians."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
