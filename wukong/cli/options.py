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


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """``--registry`` and ``--name``: where a model given as a registry version (``production``) is found."""
    parser.add_argument(
        "--registry",
        metavar="URI",
        help="where a registry version is looked up (default: $WUKONG_REGISTRY, else the newest runs/*/registry)",
    )
    parser.add_argument("--name", help="the registered model name, when a registry version is a bare VERSION")


def located_model(reference: str, args: argparse.Namespace, flag: str):
    """The folder of the model (or dataset folder) ``reference`` names: a folder or URI as it is, a registry
    version (``production``, ``3``, ``NAME:VERSION``) looked up in ``--registry`` or the default one."""
    from wukong.cli.locations import registry_uri
    from wukong.serve.locate import locate

    return locate(reference, lambda: registry_uri(args.registry, args.command), args.name, flag)
