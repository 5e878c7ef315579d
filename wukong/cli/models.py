"""``wukong models``, ``wukong bench`` and ``wukong config``."""

from __future__ import annotations

import argparse

from wukong.cli.options import add_config_options, config_from
from wukong.config import MODEL_NAMES, config_to_yaml


def _models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from wukong.model.summary import summarize_models

    cfg = config_from(args)
    if args.data:
        from wukong.data.manifest import read_manifest
        from wukong.io import open_storage

        schema = read_manifest(open_storage(args.data)).schema
    else:
        schema = cfg.data.synthetic_schema()
    rows = [
        [s.name, f"{s.sparse_params:,}", f"{s.dense_params:,}", f"{s.total_params:,}", f"{s.mflops_per_example:.2f}"]
        for s in summarize_models(schema, cfg.model, args.models or MODEL_NAMES)
    ]
    print(
        f"preset {args.config}{' on ' + args.data if args.data else ''}: "
        f"{len(schema.dense)} dense + {len(schema.sparse)} sparse features, "
        f"d={cfg.model.embedding_dim}, "
        f"Wukong {cfg.model.num_layers} {cfg.model.layer_form} layers ({cfg.model.fm_projection} Y)"
    )
    headers = ["model", "embedding params", "dense params", "total params", "MFLOP/example"]
    print(tabulate(rows, headers=headers, colalign=("left", "right", "right", "right", "right"), disable_numparse=True))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from wukong.benchmark import format_table, run_throughput

    results = run_throughput(config_from(args), args.models or MODEL_NAMES, args.batch_size, args.seconds)
    print(format_table(results))
    return 0


def _config(args: argparse.Namespace) -> int:
    print(config_to_yaml(config_from(args)), end="")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="forward+backward throughput of each model against a matmul peak")
    add_config_options(bench)
    bench.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="models to measure (default: all)")
    bench.add_argument("--batch-size", type=int, default=512, help="examples per step (default: %(default)s)")
    bench.add_argument("--seconds", type=float, default=3.0, help="time spent per measurement (default: %(default)s)")
    bench.set_defaults(func=_bench)

    models = commands.add_parser("models", help="parameters and MFLOP/example of every model for a config")
    add_config_options(models)
    models.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="models to list (default: all)")
    models.add_argument("--data", metavar="URI", help="take the features from this dataset (default: the config's)")
    models.set_defaults(func=_models)

    config = commands.add_parser("config", help="print the resolved configuration as YAML")
    add_config_options(config)
    config.set_defaults(func=_config)
