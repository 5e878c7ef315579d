"""``python -m wukong.train``: the worker entry point torchrun starts on every rank."""

import sys

from wukong.cli import main

raise SystemExit(main(["train", "--worker", *sys.argv[1:]]))
