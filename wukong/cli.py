"""The ``wukong`` command: one subcommand per pipeline step.

Usage errors (bad arguments, bad configuration) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wukong import __version__
from wukong.config import MODEL_NAMES, Config, ConfigError, config_to_yaml, load_config

USAGE_ERROR = 2

# Subcommands whose capability lands with a later issue: (help, what brings it).
PLANNED = {
    "data": ("prepare and inspect datasets (WebDataset shards on object storage)", "data ingestion"),
    "train": ("distributed training with TorchRec sharded embeddings", "distributed training"),
    "evaluate": ("AUC / LogLoss / NE / calibration of a trained model", "evaluation"),
    "registry": ("register, list and fetch trained models", "the model registry"),
    "pipeline": ("compile, run or schedule the Kubeflow pipeline", "the Kubeflow pipeline"),
}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="default", help="preset name under configs/ or a YAML path (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set model.num_layers=4 (repeatable)",
    )


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def _cmd_config(args: argparse.Namespace) -> int:
    print(config_to_yaml(_config(args)), end="")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from wukong.model.summary import summarize_models

    cfg = _config(args)
    schema = cfg.data.synthetic_schema()
    rows = [
        [s.name, f"{s.sparse_params:,}", f"{s.dense_params:,}", f"{s.total_params:,}", f"{s.mflops_per_example:.2f}"]
        for s in summarize_models(schema, cfg.model, args.models or MODEL_NAMES)
    ]
    print(
        f"preset {args.config}: {len(schema.dense)} dense + {len(schema.sparse)} sparse features, "
        f"d={cfg.model.embedding_dim}, Wukong {cfg.model.num_layers} layers ({cfg.model.fm_projection} Y)"
    )
    print(
        tabulate(
            rows,
            headers=["model", "embedding params", "dense params", "total params", "MFLOP/example"],
            colalign=("left", "right", "right", "right", "right"),
            disable_numparse=True,
        )
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from wukong.benchmark import format_table, run_throughput

    cfg = _config(args)
    results = run_throughput(cfg, args.models or MODEL_NAMES, batch_size=args.batch_size, seconds=args.seconds)
    print(format_table(results))
    return 0


def _planned(name: str, capability: str):
    def run(args: argparse.Namespace) -> int:
        print(f"wukong {name}: not built yet ({capability} is a later milestone; see README, Roadmap)", file=sys.stderr)
        return USAGE_ERROR

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wukong", description="Train Wukong recommendation models, locally or on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name, (help_text, capability) in PLANNED.items():
        planned = commands.add_parser(name, help=f"{help_text} [not built yet]", add_help=False)
        planned.set_defaults(func=_planned(name, capability))

    bench = commands.add_parser("bench", help="forward+backward throughput of each model against a matmul peak")
    _add_config_options(bench)
    bench.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="models to measure (default: all)")
    bench.add_argument("--batch-size", type=int, default=512, help="examples per step (default: %(default)s)")
    bench.add_argument("--seconds", type=float, default=3.0, help="time spent per measurement (default: %(default)s)")
    bench.set_defaults(func=_cmd_bench)

    models = commands.add_parser("models", help="parameters and MFLOP/example of every model for a config")
    _add_config_options(models)
    models.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="models to list (default: all)")
    models.set_defaults(func=_cmd_models)

    config = commands.add_parser("config", help="print the resolved configuration as YAML")
    _add_config_options(config)
    config.set_defaults(func=_cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command not in PLANNED:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"wukong {args.command}: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
