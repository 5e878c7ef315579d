"""Training throughput of Wukong and the baselines at ~1, 10 and 50 MFLOP/example (``make bench``).

Every model is width-scaled to each FLOP budget (:func:`wukong.model.scaling.config_for_flops`) on
the default preset's Criteo-shaped schema, then timed forward+backward on one fixed batch. Each
point is timed in slices with a 2048² fp32 ``torch.mm`` burst before, between and after them
(:func:`wukong.benchmark.rate_beside_peak`), and its ratio divides by the best of those bursts, so
that a ratio compares with the machine as it was during that point, never in another minute of a
noisy run. The table is printed and written into docs/benchmarks.md between this benchmark's markers.

``--compile dense`` runs each arch under ``torch.compile`` (inductor; ``train.compile=dense``);
``--compile both`` measures every point eager and compiled back to back (a same-run before/after).
``--precision bf16`` (or ``both``) runs the archs under bf16 autocast (``train.precision=bf16``),
each such point beside a 2048² bf16 ``torch.mm`` peak instead. The process allocates as training
does (``train.malloc``, default ``retain``); ``--malloc system`` keeps glibc's defaults, for a
before/after in two runs (the setting is process-wide).

    python benchmarks/model_throughput.py [--seconds 3] [--batch-size 512] [--no-write]
    python benchmarks/model_throughput.py --models wukong --sizes 1 50 --compile both --no-write
"""

from __future__ import annotations

import argparse
import datetime
import itertools

import torch
from benchmarks_doc import PRECISIONS, cpu_name, publish

from wukong.benchmark import PEAK_SIZE, format_table, model_throughput
from wukong.config import MALLOC_MODES, MODEL_NAMES, load_config
from wukong.malloc import configure_malloc
from wukong.model.scaling import config_for_flops

BEGIN, END = "<!-- model_throughput:begin -->", "<!-- model_throughput:end -->"
SIZES_MFLOPS = (1.0, 10.0, 50.0)
COMPILE_MODES = {"none": (False,), "dense": (True,), "both": (False, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--sizes", nargs="+", type=float, default=list(SIZES_MFLOPS), help="MFLOP/example targets")
    parser.add_argument("--compile", choices=sorted(COMPILE_MODES), default="none", help="torch.compile the archs")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32", help="the archs' precision(s)")
    parser.add_argument("--malloc", choices=MALLOC_MODES, default="retain", help="as train.malloc")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    print(configure_malloc(args.malloc), flush=True)

    cfg = load_config("default", ["data.cardinality=10000"])
    schema = cfg.data.synthetic_schema()
    results = []
    for name in args.models:
        for mflops in args.sizes:
            model_cfg = config_for_flops(name, schema, cfg.model, mflops)
            for precision, compiled in itertools.product(PRECISIONS[args.precision], COMPILE_MODES[args.compile]):
                point = model_throughput(
                    name, schema, model_cfg, args.batch_size, args.seconds, compiled, precision=precision
                )
                results.append(point)
                print(format_table(results[-1:]).splitlines()[-1], flush=True)

    table = format_table(results, fmt="github")
    ranges = []
    for precision in PRECISIONS[args.precision]:
        peaks = [r.peak_gflops for r in results if ("+bf16" in r.model) == (precision == "bf16")]
        ranges.append(f"{precision} {min(peaks):.1f}-{max(peaks):.1f}")
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {' and '.join(PRECISIONS[args.precision])}; batch {args.batch_size}, "
        f"{args.seconds:g} s per point, train.malloc={args.malloc}. Matmul peak: the best {PEAK_SIZE}² "
        "`torch.mm` burst of the point's "
        f"precision beside each point ({', '.join(ranges)} GFLOP/s over the run)."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
