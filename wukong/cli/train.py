"""``wukong train`` and ``wukong evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

from wukong.cli.options import add_config_options, add_registry_options
from wukong.config import MODEL_NAMES, Config, TrainConfig, load_config


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig setting as a flag (``--batch-size 1024`` is ``--set train.batch_size=1024``)."""
    group = parser.add_argument_group("training settings (override the config)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=f"train__{f.name}", action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            group.add_argument(flag, dest=f"train__{f.name}", type=kind, default=None, metavar=f.name.upper())


def _train_config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model.name={args.model}")
    overrides += [
        f"train.{key[len('train__') :]}={value}"
        for key, value in vars(args).items()
        if key.startswith("train__") and value is not None
    ]
    overrides.append(f"data.dataset={args.data}")
    return load_config(args.config, overrides)


def _preflight(cfg: Config, args: argparse.Namespace) -> list[str]:
    """Fail in the launching process, with one line, on what would otherwise fail in every worker.
    Returns the ``--init-from`` arguments of the workers: the model folder, resolved once here."""
    from wukong.data.manifest import read_manifest
    from wukong.io import open_storage

    manifest = read_manifest(open_storage(args.data))
    if not args.init_from:
        return []
    from wukong.train.warm_start import WarmStart

    folder, label = _init_source(args)
    WarmStart.plan(folder, cfg, args.data, manifest.schema, label)
    return ["--init-from", folder, "--init-label", label]


def _init_source(args: argparse.Namespace) -> tuple[str, str]:
    """The folder ``--init-from`` names (a registry version looked up), and how logs name it."""
    from wukong.cli.options import located_model

    if args.init_label:  # a worker of `--nproc`: the launcher resolved it
        return args.init_from, args.init_label
    located = located_model(args.init_from, args, "--init-from")
    return located.folder, located.describe()


def _shared_init_source(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """:func:`_init_source` as rank 0 resolves it, on every rank (a registry alias may move meanwhile)."""
    from wukong.train.distributed import broadcast_object

    if not args.init_from:
        return None, None
    found, error = None, None
    if int(os.environ.get("RANK", "0")) == 0:
        try:
            found = _init_source(args)
        except Exception as failure:  # every rank raises it, not rank 0 alone
            error = failure
    found, error = broadcast_object((found, error))
    if error is not None:
        raise error
    return found


def _launch(args: argparse.Namespace, extra: list[str]) -> int:
    """Start ``--nproc`` local workers with torchrun (standalone rendezvous), each running this command
    (with ``extra`` arguments instead of the ``--init-from`` given)."""
    worker_argv, tokens = [], iter(args.raw_argv[1:])  # raw_argv[0] is "train"
    for token in tokens:
        if token in ("--nproc", "--init-from", "--registry", "--name"):
            next(tokens, None)
        elif not token.startswith(("--nproc=", "--init-from=", "--registry=", "--name=")):
            worker_argv.append(token)
    worker_argv += extra
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={args.nproc}",
        f"--max-restarts={args.max_restarts}",
        "-m",
        "wukong.train",
        *worker_argv,
    ]
    return subprocess.call(command)


def _train(args: argparse.Namespace) -> int:
    cfg = _train_config(args)
    if args.nproc and not args.worker and "LOCAL_RANK" not in os.environ:
        return _launch(args, _preflight(cfg, args))
    from wukong.train.distributed import init_distributed, shutdown
    from wukong.train.loop import Trainer, TrainingDiverged

    env = init_distributed()
    try:
        init_from, label = _shared_init_source(args)
        Trainer(cfg, args.data, args.output, env, resume=args.resume, init_from=init_from, init_label=label).fit()
    except TrainingDiverged as error:
        print(f"wukong train: {error}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from wukong.cli.locations import announce, training_dataset
    from wukong.evaluate import evaluate_model
    from wukong.headline import HEADLINE, ORACLE_HEADLINE
    from wukong.io import open_storage
    from wukong.train.outputs import METRICS, write_json

    data = args.data or training_dataset(args.model, "evaluate")
    result = evaluate_model(args.model, data, args.split, args.batch_size)
    if int(os.environ.get("RANK", "0")) == 0:
        # Without --output, beside the model, where the pipeline's evaluate step writes it too.
        folder, name = (args.output, METRICS) if args.output else (args.model, f"eval-{args.split}.json")
        write_json(open_storage(folder), name, result)
        if not args.output:
            announce("evaluate", f"metrics written to {folder.rstrip('/')}/{name}")
        print(
            " ".join(
                f"{k} {result[k]:.4f}" if isinstance(result[k], float) else f"{k} {result[k]}"
                for k in HEADLINE + tuple(k for k in ORACLE_HEADLINE if k in result)
            )
        )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="distributed training with TorchRec sharded embeddings",
        description="Train one model on a prepared dataset. Runs as one process, under torchrun, or launches "
        "--nproc local processes itself.",
    )
    train.add_argument("--data", required=True, metavar="URI", help="a prepared dataset (wukong data prepare)")
    train.add_argument("--output", required=True, metavar="URI", help="where model, card, metrics, checkpoints go")
    add_config_options(train)
    train.add_argument("--model", choices=MODEL_NAMES, help="which model (default: the config's model.name)")
    train.add_argument("--nproc", type=int, help="launch this many local processes with torchrun")
    train.add_argument("--max-restarts", type=int, default=0, help="with --nproc: torchrun restarts after a failure")
    train.add_argument(
        "--resume",
        choices=("auto", "never"),
        default="auto",
        help="auto: continue from the latest complete checkpoint under --output (default)",
    )
    train.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from a trained model (warm start): a training --output or a registry version such as "
        "production or NAME:VERSION. Its weights (embedding rows mapped by raw value) and, where it kept its "
        "checkpoint, its optimizer state; steps, data position and warm-up start afresh (not a resume)",
    )
    add_registry_options(train)
    train.add_argument("--init-label", help=argparse.SUPPRESS)  # the launcher's resolved --init-from, for workers
    train.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    _add_train_flags(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("evaluate", help="AUC / LogLoss / NE / calibration of a trained model")
    evaluate.add_argument("--model", required=True, metavar="URI", help="the --output folder of a training run")
    evaluate.add_argument(
        "--data", metavar="URI", help="a prepared dataset (default: the one the model was trained on)"
    )
    evaluate.add_argument("--split", default="test", help="split to evaluate (default: %(default)s)")
    evaluate.add_argument(
        "--output", metavar="URI", help="folder for metrics.json (default: eval-SPLIT.json in the --model folder)"
    )
    evaluate.add_argument("--batch-size", type=int, default=4096)
    evaluate.set_defaults(func=_evaluate)
