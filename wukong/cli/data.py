"""``wukong data prepare`` and ``wukong data inspect``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wukong.config import MALLOC_MODES


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TRAIN,VALID,TEST fractions like 0.8,0.1,0.1, got {text!r}"
        ) from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions TRAIN,VALID,TEST, got {text!r}")
    return parts  # type: ignore[return-value]


def _inputs(values: list[str] | None) -> tuple[Path | None, dict[str, Path]]:
    """``--input PATH`` (once), or ``--input SPLIT=PATH`` (once per split): the path, or the paths by split.
    A value that is an existing path is a path even when it holds ``=`` (``day=2024-01-01/``)."""
    from wukong.data.errors import DataError

    paths, by_split = [], {}
    for value in values or []:
        name, equals, path = value.partition("=")
        if not equals or Path(value).exists() or not name.isidentifier():
            paths.append(Path(value))
            continue
        if not path:
            raise DataError(f"--input {value}: no path after '='")
        if name in by_split:
            raise DataError(f"--input {name}=PATH is given twice")
        by_split[name] = Path(path)
    if len(paths) > 1 or (paths and by_split):
        raise DataError("--input: give one PATH, or one SPLIT=PATH per split (train=, valid=, test=)")
    return (paths[0] if paths else None), by_split


def _split_by(args: argparse.Namespace, given_splits: bool) -> str:
    """How rows are split: by the --input files, by --split-column, or --split-by (default ratio)."""
    from wukong.data.errors import DataError

    if given_splits:
        if args.split is not None or args.split_by not in (None, "column") or args.split_column:
            raise DataError(
                "--input SPLIT=PATH files give the splits; drop --split, --split-by and --split-column "
                "(or give one --input PATH)"
            )
        return "column"
    if args.split_column:
        if args.split_by not in (None, "column"):
            raise DataError(f"--split-column goes with --split-by column, not --split-by {args.split_by}")
        return "column"
    return args.split_by or "ratio"


def _vocabulary_base(args: argparse.Namespace) -> str | None:
    """The folder whose vocabulary ``--extend-vocabulary`` extends (a registry version resolved to its
    folder once, here), checked against this run's source before anything is read."""
    if not args.extend_vocabulary:
        return None
    from wukong.cli.options import located_model
    from wukong.data.vocabulary import read_vocabulary

    located = located_model(args.extend_vocabulary, args, "--extend-vocabulary")
    if located.version is not None:
        from wukong.cli.locations import announce

        announce("data prepare", f"extending the vocabulary of {located.describe()}")
    read_vocabulary(located.folder)  # fails here, in one line, when there is none
    return located.folder


def _prepare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from wukong.data.inspect import summarize
    from wukong.data.prepare import PrepareOptions, prepare
    from wukong.data.sources import open_given_splits, open_source
    from wukong.malloc import configure_malloc

    input_path, given_splits = _inputs(args.input)
    note = configure_malloc(args.malloc)  # before the first part, and inherited by the --workers
    if not args.quiet:
        print(note, file=sys.stderr)
    options = PrepareOptions(
        shard_rows=args.shard_rows,
        block_rows=args.block_rows,
        **({"split": args.split} if args.split else {}),
        split_by=_split_by(args, bool(given_splits)),
        seed=args.seed,
        categorical=args.categorical,
        min_count=args.min_count,
        max_vocab=args.max_vocab,
        hash_size=args.hash_size,
        max_reject_ratio=args.max_reject_ratio,
        overwrite=args.overwrite,
        extend_vocabulary=_vocabulary_base(args),
        partition=args.partition,
    )
    source_options = {
        "spec": args.spec,
        "rows": args.rows,
        "seed": args.seed,
        "cardinality": args.cardinality,
        "teacher": _teacher_config(args),
        "split_column": args.split_column,
    }
    if given_splits:
        source = open_given_splits(args.source, given_splits, **source_options)
    else:
        source = open_source(args.source, input_path, **source_options)
    total = 2 * source.total_rows if source.total_rows else None
    with tqdm(
        total=total, unit=" rows", unit_scale=True, desc="prepare (fit, then write)", disable=args.quiet, delay=0.5
    ) as bar:
        manifest = prepare(source, args.output, options, progress=bar.update, workers=args.workers)
    if not args.quiet:
        print(summarize(manifest, args.output))
    return 0


# --teacher-X flag -> TeacherConfig field, with its help text (defaults are the dataclass's).
TEACHER_FLAGS = {
    "fields": ("num_sparse", int, "categorical fields F"),
    "dense": ("num_dense", int, "dense count features D (0: none)"),
    "latent-dim": ("latent_dim", int, "latent vector size r per id"),
    "order": ("order", int, "highest interaction order M (units of orders 1..M in equal numbers)"),
    "width": ("width", int, "product units K"),
    "hidden": ("hidden", int, "width H of the readout network"),
    "unit-rank": ("unit_rank", int, "products R summed in each unit (1: one product; >1: dot products of R-vectors)"),
    "temperature": ("temperature", float, "label temperature T: the logit's sd is 1/T (lower: less noise)"),
    "positive-rate": ("positive_rate", float, "mean label probability"),
    "zipf": ("zipf_exponent", float, "popularity skew of the ids"),
}


def _teacher_config(args: argparse.Namespace):
    """The teacher's shape from the --teacher-* flags (None for other sources, which take none of them)."""
    given = {field: getattr(args, f"teacher_{flag.replace('-', '_')}") for flag, (field, _, _) in TEACHER_FLAGS.items()}
    given = {field: value for field, value in given.items() if value is not None}
    if args.source != "teacher":
        if given:
            from wukong.data.errors import DataError

            raise DataError(f"the --teacher-* options apply to --source teacher only, not {args.source}")
        return None
    from wukong.data.sources.teacher import TeacherConfig

    return TeacherConfig(**given)


def _inspect(args: argparse.Namespace) -> int:
    from wukong.cli.locations import dataset_uri
    from wukong.data.inspect import summarize
    from wukong.data.manifest import read_manifest
    from wukong.io import open_storage

    uri = dataset_uri(args.uri, "data inspect")
    manifest = read_manifest(open_storage(uri))
    print(manifest.to_json() if args.json else summarize(manifest, uri))
    return 0


def _add_teacher_flags(parser: argparse.ArgumentParser) -> None:
    from wukong.data.sources.teacher import TeacherConfig

    defaults = TeacherConfig()
    group = parser.add_argument_group(
        "teacher source", "labels from a known random network; every row's true probability is stored too"
    )
    for flag, (field, kind, text) in TEACHER_FLAGS.items():
        group.add_argument(f"--teacher-{flag}", type=kind, metavar="N", help=f"{text} ({getattr(defaults, field)})")


def register(commands: argparse._SubParsersAction) -> None:
    from wukong.cli.options import add_registry_options
    from wukong.data.sources import SOURCE_NAMES

    data = commands.add_parser("data", help="prepare and inspect datasets (WebDataset shards on object storage)")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)

    prepare = actions.add_parser(
        "prepare",
        help="raw data -> preprocessed WebDataset shards + manifest at --output",
        description="Read a source, fit vocabularies and statistics on the training split, write shards, "
        "and publish manifest.json last (nothing half-written is ever visible).",
    )
    prepare.add_argument("--source", required=True, choices=SOURCE_NAMES)
    prepare.add_argument(
        "--input",
        action="append",
        metavar="PATH | SPLIT=PATH",
        help="input file or folder (movielens without it downloads the data); or, for criteo and parquet, "
        "splits given as files: --input train=PATH --input valid=PATH [--input test=PATH]",
    )
    prepare.add_argument("--output", required=True, metavar="URI", help="dataset folder, file:// or s3://bucket/prefix")
    prepare.add_argument("--spec", type=Path, help="feature spec YAML (parquet source)")
    prepare.add_argument(
        "--rows", type=int, help="rows to generate (synthetic: default 100000, teacher: 1000000) or to read (others)"
    )
    prepare.add_argument(
        "--cardinality",
        type=int,
        help="ids per feature (synthetic: default 10000), or the largest (teacher: default 2000, fields span 10x)",
    )
    prepare.add_argument("--seed", type=int, default=0, help="seed of the split and the generator (%(default)s)")
    prepare.add_argument("--shard-rows", type=int, default=200_000, help="rows per shard (%(default)s)")
    prepare.add_argument("--block-rows", type=int, default=8192, help="rows per tar member (%(default)s)")
    prepare.add_argument(
        "--split",
        type=_ratios,
        metavar="T,V,T",
        help="train,valid,test fractions (0.8,0.1,0.1)",
    )
    prepare.add_argument(
        "--split-by",
        choices=("ratio", "time", "column"),
        help="random by seeded row hash (the default), oldest rows train / newest test, or as a column says "
        "(a split fixed upstream: --split-column, or the parquet spec's `split`)",
    )
    prepare.add_argument(
        "--split-column",
        metavar="NAME",
        help="parquet: the column naming each row's split, train/valid/test (implies --split-by column)",
    )
    prepare.add_argument(
        "--categorical",
        choices=("frequency", "hash"),
        default="frequency",
        help="ids from a training-split vocabulary, or by hashing (%(default)s)",
    )
    prepare.add_argument("--min-count", type=int, default=1, help="vocabulary: least training count (%(default)s)")
    prepare.add_argument("--max-vocab", type=int, help="vocabulary: most ids per feature")
    prepare.add_argument("--hash-size", type=int, default=1 << 20, help="hashing: table size (%(default)s)")
    prepare.add_argument(
        "--max-reject-ratio",
        type=float,
        default=0.001,
        help="fail (publishing nothing) above this share of malformed rows (%(default)s)",
    )
    prepare.add_argument("--overwrite", action="store_true", help="replace a dataset already at --output")
    prepare.add_argument(
        "--partition",
        metavar="VALUE",
        help="the data partition the input holds, e.g. date=2026-11-22 (recorded in the manifest and the models "
        "trained on it; the --output is typically .../date=2026-11-22)",
    )
    prepare.add_argument(
        "--extend-vocabulary",
        metavar="FROM",
        help="keep the ids of FROM's vocabulary (a dataset, a model folder, or a registry version such as "
        "production) and give values new in this data the ids after them, so that a model warm-started from "
        "FROM (wukong train --init-from) keeps its embedding rows",
    )
    add_registry_options(prepare)
    prepare.add_argument(
        "--malloc",
        choices=MALLOC_MODES,
        default="retain",
        help="retain: freed memory stays in the process and its workers for reuse (60-65%% fewer page faults; "
        "docs/benchmarks.md); system: the C library's defaults (%(default)s; wukong/malloc.py)",
    )
    prepare.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes reading, counting and encoding the input's parts side by side (files; 64 MiB ranges of "
        "plain-text files); the rows and ids do not depend on N, the shard boundaries do (%(default)s)",
    )
    _add_teacher_flags(prepare)
    prepare.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    prepare.set_defaults(func=_prepare)

    inspect = actions.add_parser("inspect", help="print a dataset's manifest as a readable summary")
    inspect.add_argument(
        "uri",
        nargs="?",
        help="dataset folder, file:// or s3:// URI (default: the newest runs/*/dataset of a local pipeline run)",
    )
    inspect.add_argument("--json", action="store_true", help="print the raw manifest")
    inspect.set_defaults(func=_inspect)
