"""``wukong registry list|show|register|promote``."""

from __future__ import annotations

import argparse
import json


def _open(args: argparse.Namespace):
    from wukong.cli.locations import registry_uri
    from wukong.registry import open_registry

    return open_registry(registry_uri(args.registry, f"registry {args.action}"))


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    registry = _open(args)
    names = [args.name] if args.name else registry.names()
    rows = [
        [
            v.name,
            v.version,
            ",".join(v.aliases),
            f"{v.metrics.get('auc', float('nan')):.4f}",
            v.card.get("model"),
            v.created,
        ]
        for name in names
        for v in registry.versions(name)
    ]
    print(tabulate(rows, headers=["name", "version", "aliases", "auc", "model", "created"], disable_numparse=True))
    return 0


def _show(args: argparse.Namespace) -> int:
    version = _open(args).get(args.name, args.version)
    print(json.dumps(version.to_dict(), indent=1))
    return 0


def _register(args: argparse.Namespace) -> int:
    from wukong.io import read_object

    metrics = json.loads(read_object(args.metrics))
    version = _open(args).register(args.name, args.model, metrics)
    print(f"registered {version.name} version {version.version} ({version.uri})")
    return 0


def _promote(args: argparse.Namespace) -> int:
    version = _open(args).promote(args.name, args.version)
    print(f"{version.name} version {version.version} is now production")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    registry = commands.add_parser("registry", help="register, list, show and promote trained models")
    actions = registry.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help_text: str, func) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument(
            "--registry",
            metavar="URI",
            help="folder, s3:// prefix, or kubeflow://host:port (default: $WUKONG_REGISTRY, else the newest "
            "runs/*/registry of a local pipeline run, here or in a parent folder)",
        )
        parser.set_defaults(func=func)
        return parser

    add("list", "versions of one model, or of every model", _list).add_argument("--name")
    show = add("show", "one version (a number or 'production')", _show)
    show.add_argument("name")
    show.add_argument("version", nargs="?", default="production")
    reg = add("register", "register a training output with its evaluation metrics", _register)
    reg.add_argument("--name", required=True)
    reg.add_argument("--model", required=True, metavar="URI", help="the --output of `wukong train`")
    reg.add_argument("--metrics", required=True, metavar="URI", help="metrics.json of `wukong evaluate`")
    promote = add("promote", "make a version the production version", _promote)
    promote.add_argument("name")
    promote.add_argument("version", type=int)
