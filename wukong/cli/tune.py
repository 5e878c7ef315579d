"""``wukong tune``: the same trial budget for every model, selected on the validation split."""

from __future__ import annotations

import argparse
from pathlib import Path

from wukong.cli.options import add_config_options
from wukong.config import MODEL_NAMES, ConfigError


def model_list(text: str) -> list[str]:
    """``wukong,dlrm`` → the names, each checked."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise ConfigError(f"unknown model {', '.join(unknown) or text!r}; choose from {', '.join(MODEL_NAMES)}")
    return names


def add_runner_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parallel", type=int, default=1, help="trials run at once as local processes (%(default)s)")
    parser.add_argument("--nproc", type=int, default=1, help="training processes per trial (torchrun; %(default)s)")


def _tune(args: argparse.Namespace) -> int:
    from wukong.experiments.space import SearchSpace
    from wukong.experiments.tune import Tuner, summary_table

    models = model_list(args.model)
    bests = {}
    for model in models:
        output = Path(args.output) / model if len(models) > 1 else Path(args.output)
        if len(models) > 1:
            print(f"== {model}: {args.trials} trials -> {output}", flush=True)
        tuner = Tuner(
            data=args.data,
            model=model,
            space=SearchSpace.load(args.space, model),
            output=output,
            trials=args.trials,
            seed=args.seed,
            sampler=args.sampler,
            metric=args.metric,
            preset=args.config,
            overrides=args.overrides,
            parallel=args.parallel,
            startup_trials=args.startup_trials,
            nproc=args.nproc,
        )
        bests[model] = tuner.run()
    if len(models) > 1:
        table = summary_table(bests, args.metric)
        (Path(args.output) / "summary.md").write_text(table)
        print(table)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune",
        help="hyper-parameter search on the validation split (TPE or random, seeded, resumable)",
        description="Run --trials trials of a search space (YAML over config keys) for each model, on the "
        "validation split of a prepared dataset; record every trial in trials.jsonl and a table, and write the "
        "best config as a preset (best.yaml). Rerun the same command to resume; raise --trials to extend.",
    )
    tune.add_argument("--data", required=True, metavar="URI", help="a prepared dataset (wukong data prepare)")
    tune.add_argument("--model", required=True, help="model name, or several separated by commas")
    tune.add_argument(
        "--space",
        required=True,
        metavar="SPACE",
        help="search space: a YAML path or a name under configs/spaces/ (see wukong.experiments.space)",
    )
    tune.add_argument("--trials", type=int, required=True, help="trials per model (the same budget for each)")
    tune.add_argument("--output", required=True, help="folder for trials.jsonl, trials.md, best.yaml")
    tune.add_argument("--seed", type=int, default=0, help="seeds the sampler and every trial's training (%(default)s)")
    tune.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    tune.add_argument("--metric", choices=("auc", "logloss"), default="auc", help="validation metric (%(default)s)")
    tune.add_argument(
        "--startup-trials", type=int, default=10, help="TPE: random trials before the model-based ones (%(default)s)"
    )
    add_config_options(tune)
    add_runner_options(tune)
    tune.set_defaults(func=_tune)
