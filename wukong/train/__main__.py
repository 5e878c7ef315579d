"""``python -m wukong.train``: the worker entry point torchrun starts on every rank."""

from wukong.cli import main

raise SystemExit(main(["train", "--worker"] + __import__("sys").argv[1:]))
