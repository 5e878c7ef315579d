"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from wukong.config import Config, load_config


def add_config_options(parser: argparse.ArgumentParser) -> None:
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


def config_from(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)
