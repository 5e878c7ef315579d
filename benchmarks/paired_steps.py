"""Training steps of two variants, paired in the same run: two allocators, or two source trees.

Each variant lives in its own worker process (the allocator setting is process-wide; a source tree
is what the process imports): for every point (a model width-scaled to a FLOP budget, as in
``model_throughput.py``), two workers build the same model and batch
(:func:`wukong.benchmark.training_step`) and then take turns: in each of ``--rounds`` rounds each
runs steps for ``--seconds``, in alternating order, and reports its steps, wall time and page
faults. A round's ratio is the second variant's rate over the first's in that round, so both
are held to the same minute of this shared machine; the table shows the median ratio and each
variant's median rate and page faults per step. Written to docs/benchmarks.md between the markers of
the comparison.

- default: ``train.malloc=system`` against ``retain`` (this tree);
- ``--baseline TREE``: the source tree TREE (an earlier commit's files) against this one, both with
  ``retain`` (glibc's defaults where TREE has no ``wukong.malloc``).

    python benchmarks/paired_steps.py [--models wukong dlrm] [--sizes 1 10 50] [--rounds 7] [--no-write]
    python benchmarks/paired_steps.py --baseline /tmp/tree-abc123 --models wukong
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from benchmarks_doc import cpu_name, publish
from tabulate import tabulate

from wukong.config import MODEL_NAMES

MARKERS = {  # the comparison's section of docs/benchmarks.md
    "malloc": ("<!-- malloc_steps:begin -->", "<!-- malloc_steps:end -->"),
    "baseline": ("<!-- tree_steps:begin -->", "<!-- tree_steps:end -->"),
}
SIZES_MFLOPS = (1.0, 10.0, 50.0)


@dataclass(frozen=True)
class Variant:
    label: str
    malloc: str  # train.malloc
    tree: str | None = None  # a source tree to import wukong from (None: this one)


def serve(mode: str, name: str, mflops: float, batch_size: int) -> None:
    """Worker: build the step under ``train.malloc=mode``, then answer ``run SECONDS`` lines on stdin."""
    # imported here, from whichever tree PYTHONPATH names
    from wukong.benchmark import training_step
    from wukong.config import load_config
    from wukong.model.flops import count_flops
    from wukong.model.scaling import config_for_flops

    try:
        from wukong.malloc import configure_malloc
    except ImportError:  # a tree from before train.malloc: glibc's defaults
        pass
    else:
        configure_malloc(mode)
    cfg = load_config("default", ["data.cardinality=10000"])
    schema = cfg.data.synthetic_schema()
    step, model = training_step(name, schema, config_for_flops(name, schema, cfg.model, mflops), batch_size)
    for _ in range(5):
        step()
    import wukong

    print(json.dumps({"mflops": count_flops(model).mflops, "source": wukong.__file__}), flush=True)
    for line in sys.stdin:
        seconds = float(line.split()[1])
        usage, wall, steps = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
        while time.perf_counter() - wall < seconds:
            step()
            steps += 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - usage.ru_minflt
        report = dict(steps=steps, wall=time.perf_counter() - wall, faults=faults)
        print(json.dumps(report), flush=True)


class Worker:
    def __init__(self, variant: Variant, name: str, mflops: float, batch_size: int) -> None:
        command = [sys.executable, __file__, "--worker", variant.malloc, name, str(mflops), str(batch_size)]
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        if variant.tree:
            env["PYTHONPATH"] = variant.tree
        # started outside the checkout, so that only PYTHONPATH (or the installed package) provides wukong
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir()
        )
        ready = json.loads(self._read())
        self.mflops, self.source = ready["mflops"], ready["source"]
        if variant.tree and not self.source.startswith(str(Path(variant.tree).resolve())):
            raise RuntimeError(f"the {variant.label} worker imported wukong from {self.source}, not {variant.tree}")

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


def measure(
    variants: tuple[Variant, Variant], name: str, mflops: float, batch_size: int, rounds: int, seconds: float
) -> list[str]:
    workers = [Worker(v, name, mflops, batch_size) for v in variants]
    reports: list[list[dict]] = [[], []]
    try:
        for i in range(rounds):
            for j in (0, 1) if i % 2 == 0 else (1, 0):
                reports[j].append(workers[j].run(seconds))
    finally:
        for worker in workers:
            worker.close()

    def rate(report: dict) -> float:
        return batch_size * report["steps"] / report["wall"]

    ratios = [rate(b) / rate(a) for a, b in zip(*reports, strict=True)]
    row = [name, f"{workers[1].mflops:.2f}", str(batch_size)]
    for variant_reports in reports:
        row.append(f"{statistics.median(rate(r) for r in variant_reports):,.0f}")
    for variant_reports in reports:
        row.append(f"{statistics.median(r['faults'] / r['steps'] for r in variant_reports):,.0f}")
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
    parser.add_argument("--baseline", metavar="TREE", help="compare this source tree against TREE's")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.baseline:
        variants = (Variant("baseline tree", "retain", args.baseline), Variant("this tree", "retain"))
    else:
        variants = (Variant("system", "system"), Variant("retain", "retain"))
    rows = []
    for name in args.models:
        for mflops in args.sizes:
            rows.append(measure(variants, name, mflops, args.batch_size, args.rounds, args.seconds))
            print(rows[-1], flush=True)
    first, second = (v.label for v in variants)
    headers = ["model", "MFLOP/ex", "batch", f"examples/s, {first}", f"examples/s, {second}"]
    headers += [f"page faults/step, {first}", f"page faults/step, {second}", f"{second} vs {first}"]
    headers += ["range over rounds"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    compared = f"this tree against {args.baseline}, both train.malloc=retain" if args.baseline else "the allocators"
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, fp32, {compared}: forward and backward on one fixed batch, the tables frozen "
        f"(as in the model benchmark); {args.rounds} rounds of {args.seconds:g} s per variant, alternating; "
        "medians."
    )
    begin, end = MARKERS["baseline" if args.baseline else "malloc"]
    publish(begin, end, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
