"""``wukong sweep`` (train every family over a FLOP range) and ``wukong sweep report DIR`` (fit and plot)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wukong.cli.options import add_config_options
from wukong.cli.tune import add_runner_options, model_list
from wukong.config import ConfigError


def _sweep(args: argparse.Namespace) -> int:
    from wukong.experiments.report import write_report
    from wukong.experiments.sweep import Sweep, parse_grid, parse_targets

    if args.action == "report":
        output = Path(args.report_output) if args.report_output else None
        paths = write_report(
            Path(args.folder),
            args.split,
            add=[Path(a) for a in args.add],
            output=output,
            extend=[Path(e) for e in args.extend],
        )
        print("\n".join(str(p) for p in paths))
        return 0
    missing = [flag for flag in ("data", "output") if not getattr(args, flag)]
    if missing:
        raise ConfigError(f"give --{' and --'.join(missing)} (or `wukong sweep report DIR`)")
    sweep = Sweep(
        data=args.data,
        models=model_list(args.models),
        targets=parse_targets(args.mflops, args.points),
        output=Path(args.output),
        seeds=args.seeds,
        end_seeds=args.end_seeds,
        rows=args.rows,
        preset=args.config,
        overrides=args.overrides,
        grid=parse_grid(args.grid),
        parallel=args.parallel,
        nproc=args.nproc,
    )
    sweep.run()
    if not args.no_report:
        print("\n".join(str(p) for p in write_report(Path(args.output), args.split)))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="scaling sweep: every model upscaled over a FLOP range on one data budget; `sweep report DIR` fits it",
        description="Train each model family at target MFLOP/example values (upscaled configs), each point one "
        "pass over the same training rows, evaluate on valid and test, and record sweep.jsonl; then fit "
        "LogLoss = L∞ + A·C^−α per family and write PNG + HTML + Markdown. Rerun the same command to resume.",
    )
    sweep.add_argument("--data", metavar="URI", help="a prepared dataset (wukong data prepare)")
    sweep.add_argument("--models", default="wukong,dlrm,dcnv2", help="families, comma-separated (%(default)s)")
    sweep.add_argument("--mflops", default="0.03:10", help="LOW:HIGH (with --points) or A,B,C (%(default)s)")
    sweep.add_argument("--points", type=int, default=5, help="targets between LOW and HIGH, log-spaced (%(default)s)")
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per point (%(default)s)")
    sweep.add_argument("--end-seeds", type=int, default=0, help="seeds at each family's ends (0: --seeds)")
    sweep.add_argument("--rows", type=int, default=0, help="training rows every point sees once (0: all)")
    sweep.add_argument("--output", help="folder for sweep.jsonl, trials/ and the report")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="train every point at each value (repeatable: every combination); the report keeps each point's "
        "best on validation LogLoss, e.g. --grid train.learning_rate=0.001,0.002,0.004",
    )
    sweep.add_argument("--split", default="test", help="split the report fits (%(default)s)")
    sweep.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    add_config_options(sweep)
    add_runner_options(sweep)
    actions = sweep.add_subparsers(dest="action", metavar="report DIR")
    report = actions.add_parser("report", help="fit power laws and write PNG + HTML + Markdown for a sweep folder")
    report.add_argument("folder", help="the --output folder of a sweep")
    report.add_argument("--split", default="test", help="split to fit (%(default)s)")
    report.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="DIR",
        help="another sweep's folder whose points join the report (same data, rows, preset, overrides and "
        "grid; new points only; repeatable)",
    )
    report.add_argument(
        "--extend",
        action="append",
        default=[],
        metavar="DIR",
        help="another sweep's folder that trained this sweep's points at other values of its grid (a wider "
        "grid): each point's recipe is chosen again over all of them, on validation at the search seed "
        "(repeatable)",
    )
    report.add_argument("--output", dest="report_output", help="folder for the report (default: DIR)")
    sweep.set_defaults(func=_sweep)
