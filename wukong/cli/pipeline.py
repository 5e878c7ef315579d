"""``wukong pipeline compile|run|submit|schedule|schedules``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _package(args: argparse.Namespace) -> Path:
    from pipelines.wukong_pipeline import COMPILED

    return Path(args.package) if getattr(args, "package", None) else COMPILED


def _compile(args: argparse.Namespace) -> int:
    from pipelines.wukong_pipeline import compile_pipeline

    print(compile_pipeline(_package(args)))
    return 0


def _run(args: argparse.Namespace) -> int:
    import sys

    from wukong.pipeline.console import StepFailed, short_path
    from wukong.pipeline.local import LocalRun, format_summary

    if not args.local:
        print("wukong pipeline run: only --local runs here; use `wukong pipeline submit --host URL` for a cluster")
        return 2
    run = LocalRun(
        workdir=Path(args.workdir),
        source=args.source,
        input_uri=str(args.input or ""),
        partition=args.partition,
        init_from=args.init_from,
        rows=args.rows,
        seed=args.seed,
        split_by=args.split_by,
        ingest_tasks=args.ingest_tasks,
        model_name=args.model,
        preset=args.preset,
        overrides=args.overrides,
        nproc=args.nproc,
        registered_name=args.registered_name,
        min_auc=args.min_auc,
        tolerance=args.tolerance,
        verbose=args.verbose,
    )
    log_path = run.log_path()
    print(f"running the pipeline on this machine (kfp.local); every step's output goes to {short_path(str(log_path))}")
    try:
        summary = run.run(log_path=log_path)
    except StepFailed as error:
        print(f"wukong pipeline run: {error}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


def _client(args: argparse.Namespace):
    from wukong.pipeline.remote import connect

    return connect(args.host)


def _submit(args: argparse.Namespace) -> int:
    from wukong.pipeline.remote import parse_params, submit

    run_id = submit(_client(args), args.host, _package(args), parse_params(args.param), args.experiment, args.run_name)
    print(f"submitted run {run_id} to {args.host} (experiment {args.experiment})")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from wukong.pipeline.remote import check_cron, parse_params, schedule

    check_cron(args.cron)
    run_id = schedule(
        _client(args), args.host, _package(args), parse_params(args.param), args.experiment, args.name, args.cron
    )
    print(f"recurring run {run_id} created: '{args.cron}', one at a time, no catch-up, caching off")
    return 0


def _schedules(args: argparse.Namespace) -> int:
    from wukong.pipeline.remote import describe, schedules

    action = next((a for a in ("enable", "disable", "delete") if getattr(args, a)), None)
    print(describe(schedules(_client(args), args.host, action, getattr(args, action) if action else None)))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    pipeline = commands.add_parser("pipeline", help="compile, run locally, submit or schedule the Kubeflow pipeline")
    actions = pipeline.add_subparsers(dest="action", metavar="ACTION", required=True)

    compile_ = actions.add_parser(
        "compile", help="write the pipeline's YAML (default: pipelines/wukong_training_pipeline.yaml)"
    )
    compile_.add_argument("--package", help="where to write it")
    compile_.set_defaults(func=_compile)

    run = actions.add_parser("run", help="run the whole pipeline locally with kfp.local (the main job)")
    run.add_argument("--local", action="store_true", required=True, help="run with kfp.local on this machine")
    run.add_argument("--workdir", default="runs/pipeline", help="dataset, runs and registry go here (%(default)s)")
    run.add_argument("--source", default="synthetic", choices=("synthetic", "movielens", "criteo", "parquet"))
    run.add_argument("--input", type=Path, help="raw data for movielens/criteo/parquet")
    run.add_argument(
        "--partition",
        default="",
        metavar="newest|KEY=VALUE",
        help="prepare one partition of --input (a folder of KEY=VALUE folders, e.g. date=2026-11-22): the newest, "
        "or the one named; its dataset goes to WORKDIR/dataset/KEY=VALUE",
    )
    run.add_argument(
        "--init-from",
        default="",
        metavar="MODEL",
        help="warm-start from this model: production (the registry's, a cold start while there is none), "
        "a version, or a model folder; the new data's vocabulary extends the model's",
    )
    run.add_argument(
        "--rows",
        type=int,
        default=0,
        help="synthetic: rows to generate (default 100000); other sources: read only the first N",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--split-by",
        default="ratio",
        choices=("ratio", "time"),
        help="ratio: 80/10/10 by a seeded hash of each row's id; time: by the source's time column (movielens); "
        "one ingest step only (%(default)s)",
    )
    run.add_argument(
        "--ingest-tasks",
        type=int,
        default=0,
        metavar="N",
        help="fan the ingest out: a plan step, loops of at most N tasks (each reads, counts and encodes its group of "
        "the input's files), the vocabulary merged from their counts, the manifest committed last; "
        "0: one ingest step (%(default)s). On a cluster: --param ingest_tasks=N",
    )
    run.add_argument("--model", default="wukong", choices=("wukong", "dlrm", "dcnv2", "finalmlp"))
    run.add_argument("--preset", default="tiny", help="config preset for training (%(default)s)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--nproc", type=int, default=2, help="local training processes (%(default)s)")
    run.add_argument("--registered-name", default="wukong-ctr")
    run.add_argument("--min-auc", type=float, default=0.6)
    run.add_argument("--tolerance", type=float, default=0.002)
    run.add_argument(
        "--verbose", action="store_true", help="show every step's output live too (it always goes to the log file)"
    )
    run.set_defaults(func=_run)

    def remote(name: str, help_text: str, func) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--host", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
        parser.set_defaults(func=func)
        return parser

    submit = remote("submit", "submit one run of the compiled pipeline", _submit)
    submit.add_argument("--experiment", default="wukong")
    submit.add_argument("--run-name")
    submit.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="e.g. ingest_tasks=16 (a fanned-out ingest)"
    )
    submit.add_argument("--package", help="compiled pipeline YAML (default: the repository's)")

    schedule = remote("schedule", "create a recurring run (cron with 6 fields, seconds first)", _schedule)
    schedule.add_argument("--cron", required=True, help="e.g. '0 0 3 * * *' for 03:00 every day")
    schedule.add_argument("--name", default="wukong-retraining")
    schedule.add_argument("--experiment", default="wukong")
    schedule.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    schedule.add_argument("--package", help="compiled pipeline YAML (default: the repository's)")

    listing = remote("schedules", "list recurring runs, or enable / disable / delete one", _schedules)
    group = listing.add_mutually_exclusive_group()
    for action in ("enable", "disable", "delete"):
        group.add_argument(f"--{action}", metavar="ID")
