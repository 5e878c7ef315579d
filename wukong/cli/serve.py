"""``wukong export`` and ``wukong predict``: a servable program of a trained model, and scores of raw rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from wukong.cli.options import add_registry_options, located_model

MODEL_HELP = (
    "a model folder (training --output, registered version, or its export/), or a registry version: "
    "VERSION or NAME:VERSION, e.g. production"
)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    add_registry_options(parser)


def _locate(args: argparse.Namespace):
    return located_model(args.model, args, "--model")


def _export(args: argparse.Namespace) -> int:
    from wukong.serve.artifact import export_artifact

    located = _locate(args)
    signature = export_artifact(located.folder, args.output)
    where = args.output or f"{located.folder}/export"
    tensors = ", ".join(t["name"] for t in signature["tensors"])
    print(f"exported {signature['model']['name']} of {located.describe()} to {where}")
    print(f"  program {signature['files']['program']}: ({tensors}) -> probability; load with torch.export.load")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from wukong.serve.locate import artifact_of
    from wukong.serve.predict import ServedModel, predict_file

    located = _locate(args)
    model = ServedModel(artifact_of(located), device=args.device)
    rows = predict_file(model, Path(args.input), args.output, keep=args.keep, batch_rows=args.batch_rows)
    print(f"scored {rows} rows of {args.input} with {located.describe()}; wrote {args.output}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write a servable torch.export program of a trained model, with its preprocessing",
        description="Export a trained model for inference on CPU or GPU: a torch.export program (plain torch, "
        "no TorchRec), the training vocabularies and a signature.json. Written to the model folder's "
        "export/ unless --output says otherwise; a registry version gets it in its own folder.",
    )
    _add_model_options(export)
    export.add_argument("--output", metavar="URI", help="artifact folder (default: MODEL/export)")
    export.set_defaults(func=_export)

    predict = commands.add_parser(
        "predict",
        help="score raw rows (Parquet) with an exported model",
        description="Score raw rows, the columns `wukong data prepare` reads, with the training preprocessing; "
        "writes a Parquet file with a probability column, in input order, whole or not at all.",
    )
    _add_model_options(predict)
    predict.add_argument("--input", required=True, metavar="PATH", help="a Parquet file or a folder of them")
    predict.add_argument("--output", required=True, metavar="URI", help="the scores' Parquet file (path or s3://)")
    predict.add_argument(
        "--keep", action="append", default=[], metavar="COLUMN", help="copy this input column to the output"
    )
    predict.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    predict.add_argument("--batch-rows", type=int, default=65_536, help="rows scored at once (default: %(default)s)")
    predict.set_defaults(func=_predict)
