"""Training throughput of Wukong and the baselines at ~1, 10 and 50 MFLOP/example (``make bench``).

Every model is width-scaled to each FLOP budget (:func:`wukong.model.scaling.config_for_flops`) on
the default preset's Criteo-shaped schema, then timed forward+backward on one fixed batch. The
baseline, a square fp32 matmul, is measured in the same run; the table reports achieved/peak so that
runs on different or noisy machines compare. The table is printed and written into
docs/benchmarks.md between this benchmark's markers.

    python benchmarks/model_throughput.py [--seconds 3] [--batch-size 512] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime

import torch
from benchmarks_doc import cpu_name, publish

from wukong.benchmark import format_table, matmul_peak_gflops, model_throughput
from wukong.config import MODEL_NAMES, load_config
from wukong.model.scaling import config_for_flops

BEGIN, END = "<!-- model_throughput:begin -->", "<!-- model_throughput:end -->"
SIZES_MFLOPS = (1.0, 10.0, 50.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    cfg = load_config("default", ["data.cardinality=10000"])
    schema = cfg.data.synthetic_schema()
    peak = matmul_peak_gflops(seconds=args.seconds)
    results = []
    for name in MODEL_NAMES:
        for mflops in SIZES_MFLOPS:
            model_cfg = config_for_flops(name, schema, cfg.model, mflops)
            results.append(model_throughput(name, schema, model_cfg, args.batch_size, args.seconds, peak))
            print(format_table(results[-1:]).splitlines()[-1], flush=True)

    table = format_table(results, fmt="github")
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, fp32; batch {args.batch_size}, {args.seconds:g} s per point. "
        f"Matmul peak: {peak:.1f} GFLOP/s (2048² fp32 `torch.mm`, same run)."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


if __name__ == "__main__":
    main()
