"""The public reference implementation, FuxiCTR's WuKong, measured beside this project's Wukong.

Issues 10 and 13 compare this project with FuxiCTR's WuKong (``model_zoo/WuKong/src/WuKong.py`` of
the FuxiCTR repository, on the ``fuxictr`` package). Neither is a dependency of this project: install
``fuxictr`` (and, for ``quality``, its data dependencies: polars < 2, scikit-learn, h5py) where this
script can import it, and point ``--fuxictr-src`` at the folder holding ``WuKong.py``::

    pip install --target /tmp/fx/lib fuxictr 'polars<2' scikit-learn h5py
    PYTHONPATH=/tmp/fx/lib python benchmarks/fuxictr_reference.py speed --fuxictr-src FuxiCTR/model_zoo/WuKong/src
    PYTHONPATH=/tmp/fx/lib python benchmarks/fuxictr_reference.py quality --fuxictr-src ... --data /tmp/implicit

**speed**: examples/s of training steps at the reference's default size (3 layers, nF = nL = 40
(its ``fmb_dim`` and ``compression_dim``), k = 8, FMB MLP [512, 256], head [512, 256], d = 16,
10 categorical fields, batch 4096). The reference runs its own ``train_step`` (Adam, gradient-norm
clipping at 10) on one fixed random batch: its steps alone, no data loading. This project runs
``wukong train`` with the same layer (``layer_form=compact``, the reference's LayerNorm over the
whole layer, ReLU on the FMB, dropout 0.2 before the transform: the same 1.65 MFLOP/example) and
reports the median of its logging windows, which include reading and distributing batches, so the
comparison favours the reference. Each configuration runs once per round, in turn, and keeps its
best round. Written to docs/benchmarks.md.

**quality**: FuxiCTR's own pipeline on pre-split Parquet files (``train/valid/test.parquet`` and the
``features.yaml`` of ``benchmarks/implicit_ctr.py``): its ``FeatureProcessor`` (vocabularies from
train, min count 1), ``fit`` with its defaults (early stop on validation AUC with patience 2, the rate
x0.1 after each epoch without gain, the best epoch's weights restored, gradient norm clipped at 10)
and ``evaluate`` of the best model on valid and test, for each seed; then mean ± sample std.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

BEGIN, END = "<!-- fuxictr_speed:begin -->", "<!-- fuxictr_speed:end -->"
FIELDS, BATCH, VOCAB = 10, 4096, 1000
REFERENCE_MODEL = {  # WuKong.__init__'s keyword arguments at the size issue 13 timed
    "embedding_dim": 16,
    "num_layers": 3,
    "compression_dim": 40,
    "fmb_dim": 40,
    "project_dim": 8,
    "fmb_units": [512, 256],
    "mlp_hidden_units": [512, 256],
    "dropout_rate": 0.2,
}
# The same layer in this project's terms (wukong.model.stack.CompactWukongLayer).
SAME_LAYER = [
    "model.layer_form=compact",
    "model.layer_norm=layer",
    "model.fmb_activation=relu",
    "model.layer_dropout=0.2",
]
OURS = {  # label: extra `wukong train` flags
    "this project, fp32": [],
    "this project, fp32, compiled": ["--compile", "dense"],
    "this project, bf16": ["--precision", "bf16"],
    "this project, bf16, compiled": ["--precision", "bf16", "--compile", "dense"],
}
REFERENCE_LABEL = "FuxiCTR WuKong (reference), fp32, steps only"


# ---- FuxiCTR: its model and training loop --------------------------------------------------------------
def reference_params(seed: int, lr: float = 1e-3, **extra: object) -> dict:
    """The parameter dictionary FuxiCTR's ``run_expid.py`` hands a model (its Base defaults)."""
    return {
        "model": "WuKong",
        "model_id": f"WuKong_seed{seed}",
        "gpu": -1,
        "loss": "binary_crossentropy",
        "metrics": ["logloss", "AUC"],
        "task": "binary_classification",
        "optimizer": "adam",
        "learning_rate": lr,
        "embedding_regularizer": 0,
        "net_regularizer": 0,
        "batch_size": BATCH,
        "epochs": 30,
        "shuffle": True,
        "seed": seed,
        "monitor": "AUC",
        "monitor_mode": "max",
        "early_stop_patience": 2,
        "save_best_only": True,
        "eval_steps": None,
        "verbose": 0,
        "num_workers": 0,
        "group_id": None,
        **REFERENCE_MODEL,
        **extra,
    }


def reference_steps_per_s(steps: int, chunks: int) -> float:
    """Examples/s of FuxiCTR's ``train_step`` on one random batch: the median of ``chunks`` timings."""
    import torch
    from fuxictr.features import FeatureMap
    from fuxictr.pytorch.torch_utils import seed_everything
    from WuKong import WuKong

    seed_everything(seed=0)
    with tempfile.TemporaryDirectory() as folder:
        feature_map = FeatureMap("speed", folder)  # what FeatureMap.load would set from a feature_map.json
        feature_map.features = OrderedDict(
            (f"f{i}", {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": VOCAB})
            for i in range(FIELDS)
        )
        feature_map.labels, feature_map.group_id = ["label"], None
        feature_map.total_features, feature_map.default_emb_dim = FIELDS * VOCAB, REFERENCE_MODEL["embedding_dim"]
        feature_map.num_fields = feature_map.get_num_fields()
        feature_map.set_column_index()
        model = WuKong(feature_map, model_root=folder, **reference_params(0))
    model._max_gradient_norm = 10.0  # what fit() sets
    generator = torch.Generator().manual_seed(0)
    batch = {f"f{i}": torch.randint(0, VOCAB, (BATCH,), generator=generator) for i in range(FIELDS)}
    batch["label"] = torch.randint(0, 2, (BATCH,), generator=generator).float()
    model.train()
    for _ in range(5):
        model.train_step(batch)
    rates = []
    for _ in range(chunks):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_step(batch)
        rates.append(steps * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def reference_quality(data: Path, seed: int, work: Path) -> dict:
    """FuxiCTR's pipeline on ``data``'s Parquet splits: fit with early stopping, then evaluate the best."""
    import numpy as np
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import yaml
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything
    from WuKong import WuKong

    spec = yaml.safe_load((data / "features.yaml").read_text())
    label, fields = spec["label"], list(spec["sparse"])
    splits = ("train", "valid", "test")
    csv = {s: work / f"{s}.csv" for s in splits}  # FuxiCTR's FeatureProcessor reads CSV
    for s in splits:
        if not csv[s].exists():
            pacsv.write_csv(pq.read_table(data / f"{s}.parquet", columns=[label, *fields]), csv[s])
    params = reference_params(
        seed,
        model_root=str(work / "checkpoints"),
        dataset_id="data",
        data_root=str(work),
        data_format="npz",
        min_categr_count=1,
        feature_cols=[{"name": fields, "active": True, "dtype": "str", "type": "categorical"}],
        label_col={"name": label, "dtype": "float"},
    )
    seed_everything(seed=seed)
    encoder = FeatureProcessor(**params)
    encoded = {s: Path(encoder.data_dir) / f"{s}.npz" for s in splits}
    if not all(p.exists() for p in encoded.values()):  # the same vocabularies for every seed
        frames = {s: encoder.preprocess(encoder.read_data(str(csv[s]), data_format="csv")) for s in splits}
        encoder.fit(frames["train"], rebuild_dataset=True, meta_ddf=None, min_categr_count=1)
        for s, frame in frames.items():
            table = frame.collect()
            np.savez(encoded[s], **encoder.transform({c: table[c].to_numpy() for c in table.columns}))
    params.update({f"{s}_data": str(encoded[s]) for s in splits})
    (work / "checkpoints" / params["dataset_id"]).mkdir(parents=True, exist_ok=True)  # where fit saves the best
    feature_map = FeatureMap(params["dataset_id"], encoder.data_dir)
    feature_map.load(encoder.json_file, params)
    model = WuKong(feature_map, **params)
    train, valid = RankDataLoader(feature_map, stage="train", **params)
    model.fit(train, validation_data=valid, **params)
    valid_metrics = model.evaluate(valid)
    test_metrics = model.evaluate(RankDataLoader(feature_map, stage="test", **params))
    return {
        "seed": seed,
        "valid_auc": float(valid_metrics["AUC"]),
        "test_auc": float(test_metrics["AUC"]),
        "test_logloss": float(test_metrics["logloss"]),
        "epochs": model._epoch_index + 1,
    }


# ---- this project -----------------------------------------------------------------------------------
def our_steps_per_s(data: str, out: Path, flags: list[str], args: argparse.Namespace) -> tuple[float, float]:
    """(examples/s, MFLOP/example) of ``wukong train`` with the reference's layer: its median log window
    (``train_throughput.train``, the same run as that benchmark's reference rows)."""
    from train_throughput import REFERENCE, train

    same_layer = [f for setting in SAME_LAYER for f in ("--set", setting)]
    rate = train(data, out, "reference", "wukong", 1, [*REFERENCE, *same_layer, *flags], args)
    return rate, json.loads((out / "model_card.json").read_text())["mflops_per_example"]


# ---- commands -----------------------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> None:
    import torch
    from benchmarks_doc import cpu_name, publish
    from tabulate import tabulate
    from train_throughput import prepare

    best: dict[str, float] = {}
    mflops: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare("reference", args.rows, f"{tmp}/data")  # 10 categorical fields, no dense one
        for round_ in range(args.rounds):
            rate = reference_steps_per_s(args.steps // 10, chunks=10)
            best[REFERENCE_LABEL] = max(best.get(REFERENCE_LABEL, 0.0), rate)
            print(f"round {round_ + 1}: {REFERENCE_LABEL}: {rate:,.0f} examples/s", flush=True)
            for index, (label, flags) in enumerate(OURS.items()):
                out = Path(tmp) / f"round{round_}-run{index}"
                rate, mflops[label] = our_steps_per_s(data, out, flags, args)
                best[label] = max(best.get(label, 0.0), rate)
                print(f"round {round_ + 1}: {label}: {rate:,.0f} examples/s", flush=True)
    reference = best[REFERENCE_LABEL]
    rows = [[REFERENCE_LABEL, "1.65", f"{reference:,.0f}", "1.00x"]]
    rows += [
        [label, f"{mflops[label]:.2f}", f"{best[label]:,.0f}", f"{best[label] / reference:.2f}x"] for label in OURS
    ]
    table = tabulate(rows, headers=["configuration", "MFLOP/example", "examples/s", "vs reference"], tablefmt="github")
    header = (
        f"Measured {datetime.date.today()} on {cpu_name()} ({torch.get_num_threads()} threads), torch "
        f"{torch.__version__}: FuxiCTR's WuKong and this project's Wukong with the same layer at the reference's "
        f"default size (3 layers, nF = nL = 40, k = 8, FMB MLP [512, 256], head [512, 256], d = 16, {FIELDS} "
        f"categorical fields, batch {BATCH}), best of {args.rounds} rounds, each round running every "
        "configuration in turn."
    )
    publish(BEGIN, END, header, table, write=not args.no_write)


def quality(args: argparse.Namespace) -> None:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs.append(reference_quality(Path(args.data), seed, Path(tmp)))
            print(json.dumps(runs[-1]), flush=True)

    def mean_std(key: str) -> str:
        values = [r[key] for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {std:.4f}"

    print(
        f"FuxiCTR WuKong on {args.data}, seeds {args.seeds}: valid AUC {mean_std('valid_auc')}, "
        f"test AUC {mean_std('test_auc')}, test LogLoss {mean_std('test_logloss')}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuxictr-src", required=True, help="the folder of FuxiCTR's WuKong.py")
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed", help="training steps per second, beside this project's")
    speed_parser.add_argument("--rounds", type=int, default=2)
    speed_parser.add_argument("--steps", type=int, default=60, help="steps of each run")
    speed_parser.add_argument("--rows", type=int, default=300_000, help="rows of this project's dataset")
    speed_parser.set_defaults(batch_size=None)  # train_throughput.train's flag for its other presets
    speed_parser.add_argument("--no-write", action="store_true")
    quality_parser = commands.add_parser("quality", help="FuxiCTR's fit and evaluate on pre-split Parquet files")
    quality_parser.add_argument("--data", required=True, help="folder of train/valid/test.parquet and features.yaml")
    quality_parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    source = Path(args.fuxictr_src)
    if not (source / "WuKong.py").is_file():
        parser.error(f"--fuxictr-src {source}: no WuKong.py there (FuxiCTR's model_zoo/WuKong/src)")
    if args.command == "quality":
        needed = ["features.yaml", *(f"{split}.parquet" for split in ("train", "valid", "test"))]
        missing = [name for name in needed if not (Path(args.data) / name).is_file()]
        if missing:
            parser.error(
                f"--data {args.data}: missing {', '.join(missing)} (the output folder of benchmarks/implicit_ctr.py)"
            )
    sys.path.insert(0, str(source.resolve()))
    if args.command == "speed":
        speed(args)
    else:
        quality(args)


if __name__ == "__main__":
    main()
