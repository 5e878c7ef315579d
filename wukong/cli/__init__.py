"""The ``wukong`` command: one subcommand per pipeline step.

Usage errors (bad arguments, bad configuration, bad input data, unreachable storage) print one line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from wukong import __version__
from wukong.cli import data, launch, models, pipeline, registry, serve, sweep, train, tune
from wukong.config import ConfigError
from wukong.data.errors import DataError
from wukong.io import StorageError
from wukong.registry.base import RegistryError

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wukong", description="Train Wukong recommendation models, locally or on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data.register(commands)
    train.register(commands)
    launch.register(commands)
    registry.register(commands)
    serve.register(commands)
    pipeline.register(commands)
    models.register(commands)
    tune.register(commands)
    sweep.register(commands)
    return parser


# torch warns once per process that TorchRec calls its deprecated ``is_fx_tracing``; nothing a user can act on.
QUIET_LOGGERS = ("torch.fx._symbolic_trace",)


def main(argv: Sequence[str] | None = None) -> int:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc` relaunches itself with these
    try:
        return args.func(args)
    except (ConfigError, DataError, StorageError, RegistryError) as error:
        command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
        print(f"wukong {command}: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
