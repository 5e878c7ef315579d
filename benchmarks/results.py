"""Every model × seeds, each with its (tuned) preset, on one dataset: the table to docs/results.md.

Each model trains with its own preset (``--tuned DIR``: the ``best.yaml`` that ``wukong tune`` wrote for
it, else ``--config``) for every seed, is evaluated on the validation and test splits, and the table
gives mean ± std over seeds, MFLOP/example, the best step of each seed and a verdict by the 2σ rule
(:mod:`wukong.experiments.compare`). Trials run through the experiment runner: ``--parallel`` local
processes, recorded in ``<work>/results.jsonl``, and a killed run resumes where it stopped.

    python benchmarks/results.py                                   # MovieLens (../shared copy), `movielens` preset
    python benchmarks/results.py --data DATASET --tuned runs/tune  # any prepared dataset, tuned presets
    python benchmarks/results.py --source parquet --input rows/ --spec features.yaml   # prepared here first
    python benchmarks/results.py --split-files train.parquet valid.parquet test.parquet --spec features.yaml
    python benchmarks/results.py --variant "Wukong (attentive Y)" wukong model.fm_projection=attentive

The table replaces the text between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in
``--output`` (docs/results.md), so the prose around it stays; a file without the markers is written whole.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import subprocess
import sys
from pathlib import Path

from wukong.config import MODEL_NAMES
from wukong.experiments.compare import Entry, Row, headline, table
from wukong.experiments.trials import TrialRunner

ROOT = Path(__file__).resolve().parent.parent
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
LABELS = {"wukong": "Wukong", "dlrm": "DLRM", "dcnv2": "DCNv2", "finalmlp": "FinalMLP"}


def combine_splits(files: list[Path], spec: Path, folder: Path) -> tuple[Path, Path, list[str]]:
    """Pre-split Parquet files as one input whose ``__split`` column keeps their split, with its spec."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for split, file in zip(("train", "valid", "test"), files):
        table = pq.read_table(file)
        tables.append(table.append_column("__split", pa.array([split] * table.num_rows)))
    pq.write_table(pa.concat_tables(tables), folder / "rows.parquet")
    features = yaml.safe_load(spec.read_text()) or {}
    (folder / "spec.yaml").write_text(yaml.safe_dump({**features, "split": "__split"}, sort_keys=False))
    return folder / "rows.parquet", folder / "spec.yaml", ["--split-by", "column"]


def prepare(args: argparse.Namespace, work: Path) -> str:
    """The dataset: ``--data`` as given, or ``--source`` (or ``--split-files``) prepared once into ``<work>/data``."""
    if args.data:
        return args.data
    folder = work / "data"
    if not (folder / "manifest.json").is_file():
        source, data, spec, extra = args.source, args.input, args.spec, []
        if args.split_files:
            if not args.spec:
                raise SystemExit("--split-files needs --spec FEATURES.yaml (label, dense and sparse columns)")
            source = "parquet"
            data, spec, extra = combine_splits(args.split_files, args.spec, work / "input")
        command = [sys.executable, "-m", "wukong", "data", "prepare", "--source", source, "--output", str(folder)]
        command += ["--input", str(data)] if data else []
        command += ["--spec", str(spec)] if spec else []
        subprocess.run([*command, *extra, *args.prepare_args, "--quiet"], check=True)
    return str(folder)


def preset_of(model: str, args: argparse.Namespace) -> str | None:
    """The model's tuned preset under ``--tuned`` where there is one, else ``--config``."""
    if args.tuned:
        for path in (args.tuned / model / "best.yaml", args.tuned / f"{model}.yaml"):
            if path.is_file():
                return str(path)
    return args.config


def entries(args: argparse.Namespace) -> list[Entry]:
    """One entry per model, then the variants; a variant starts from its model's preset, as its row does."""
    rows = [
        Entry(LABELS.get(model, model), model, preset_of(model, args), tuple(args.overrides))
        for model in args.models.split(",")
    ]
    for label, model, *overrides in args.variant:
        if model not in MODEL_NAMES:
            raise SystemExit(f"--variant {label!r}: unknown model {model!r}; choose from {', '.join(MODEL_NAMES)}")
        rows.append(Entry(label, model, preset_of(model, args), (*args.overrides, *overrides)))
    return rows


def document(rows: list[Row], args: argparse.Namespace, data: str) -> str:
    presets = "; ".join(f"{r.entry.label}: `{r.entry.preset}`" for r in rows)
    extra = [f"{r.entry.label}: `{' '.join(r.entry.overrides)}`" for r in rows if r.entry.overrides]
    return (
        f"{BEGIN}\n"
        f"Produced by `python benchmarks/results.py {shlex.join(sys.argv[1:])}` on {datetime.date.today()}.\n"
        f"Dataset `{data}`; seeds {', '.join(map(str, args.seeds))}; every row trains with its preset "
        f"({presets}), early stopping and model selection on the validation split only, then the best "
        f"validation checkpoint is evaluated on the test split. Mean ± sample standard deviation over seeds.\n\n"
        f"{table(rows)}\n\n{headline(rows)}\n" + (f"\nOverrides: {'; '.join(extra)}.\n" if extra else "") + f"{END}\n"
    )


def publish(path: Path, block: str, title: str) -> None:
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = f"# {title}\n\n{block}"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data", help="a prepared dataset (wukong data prepare)")
    data.add_argument("--source", help="prepare this source first (movielens, parquet, criteo, teacher, synthetic)")
    data.add_argument(
        "--split-files", type=Path, nargs=3, metavar=("TRAIN", "VALID", "TEST"), help="pre-split Parquet files"
    )
    parser.add_argument("--input", type=Path, help="raw input of --source")
    parser.add_argument("--spec", type=Path, help="feature spec of --source parquet")
    parser.add_argument(
        "--prepare-args", nargs=argparse.REMAINDER, default=[], help="more `wukong data prepare` flags (last)"
    )
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated (%(default)s)")
    parser.add_argument("--config", default=None, help="preset of models without a tuned one")
    parser.add_argument("--tuned", type=Path, help="`wukong tune --output` folder: <model>/best.yaml per model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar="ARG", help="LABEL MODEL [KEY=VALUE ...]"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1, help="trials at once (%(default)s)")
    parser.add_argument("--work", type=Path, help="runs and results.jsonl (default: runs/results/<dataset name>)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--title", default="Results")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    if not (
        args.data or args.source or args.split_files
    ):  # the default: the shared MovieLens copy, as `make results` runs it
        args.source, args.input = "movielens", args.input or MOVIELENS
        args.config = args.config or "movielens"
        args.title = "Results on real data: MovieLens ml-latest-small"
    args.config = args.config or "default"
    name = Path(args.data or (args.split_files or [args.input or args.source])[0]).name
    work = (args.work or ROOT / "runs" / "results" / name).absolute()

    dataset = prepare(args, work)
    rows = [Row(entry) for entry in entries(args)]
    runner = TrialRunner(dataset, work, "results.jsonl", parallel=args.parallel)
    records = runner.run([spec for row in rows for spec in row.entry.specs(args.seeds)])
    for row in rows:
        row.records = [records[s.id] for s in row.entry.specs(args.seeds) if s.id in records]
    block = document(rows, args, dataset)
    print(block)
    if not args.no_write:
        publish(args.output, block, args.title)
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
