"""Wukong against DLRM, DCNv2 and FinalMLP on the real MovieLens ml-latest-small data (docs/results.md).

Every model trains with the same budget (the `movielens` preset: same epochs, batch size, optimizers,
early stopping on validation AUC) for 3 seeds, then is evaluated on the test split. Wukong variants
(attentive Y, wider layers, deeper stack) show what else was tried. The data set is prepared once
(ratio split, seed 0) from ../shared/data/ml-latest-small or --input.

    python benchmarks/results_movielens.py [--input PATH] [--seeds 0 1 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "ml-latest-small"
RESULTS = ROOT / "docs" / "results.md"
SYNTHETIC = ROOT / "docs" / "results-synthetic.md"
PRESET = "movielens"

# (label, model, overrides)
RUNS = [
    ("Wukong (static Y)", "wukong", []),
    ("Wukong (attentive Y)", "wukong", ["model.fm_projection=attentive"]),
    (
        "Wukong (nF=nL=16, k=16)",
        "wukong",
        ["model.num_fmb_embeddings=16", "model.num_lcb_embeddings=16", "model.fm_rank=16"],
    ),
    ("Wukong (3 layers)", "wukong", ["model.num_layers=3"]),
    ("DLRM", "dlrm", []),
    ("DCNv2", "dcnv2", []),
    ("FinalMLP", "finalmlp", []),
]


def wukong(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "wukong", *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"wukong {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--synthetic-rows",
        type=int,
        default=0,
        help="compare on this many synthetic rows (planted order 2-4 interactions) instead of MovieLens",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.synthetic_rows:
        source = ["--source", "synthetic", "--rows", str(args.synthetic_rows)]
    else:
        source = ["--source", "movielens", "--input", str(args.input)]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/data"
        wukong("data", "prepare", *source, "--output", data, "--quiet")
        for label, model, overrides in RUNS:
            aucs, loglosses, steps = [], [], []
            for seed in args.seeds:
                out = f"{tmp}/{model}-{len(rows)}-{seed}"
                sets = [item for o in overrides for item in ("--set", o)]
                wukong(
                    "train",
                    "--data",
                    data,
                    "--output",
                    out,
                    "--config",
                    PRESET,
                    "--model",
                    model,
                    "--seed",
                    str(seed),
                    *sets,
                )
                wukong("evaluate", "--model", out, "--data", data, "--split", "test", "--output", f"{out}/test")
                metrics = json.loads(Path(f"{out}/test/metrics.json").read_text())
                card = json.loads(Path(f"{out}/model_card.json").read_text())
                aucs.append(metrics["auc"])
                loglosses.append(metrics["logloss"])
                steps.append(card["best_step"])
                print(
                    f"{label} seed {seed}: test auc {metrics['auc']:.4f} logloss {metrics['logloss']:.4f}", flush=True
                )
            rows.append(
                {
                    "label": label,
                    "overrides": overrides,
                    "mflops": card["mflops_per_example"],
                    "auc": (statistics.mean(aucs), statistics.stdev(aucs) if len(aucs) > 1 else 0.0),
                    "logloss": (statistics.mean(loglosses), statistics.stdev(loglosses) if len(loglosses) > 1 else 0.0),
                    "best_steps": steps,
                }
            )
    table = tabulate(
        [
            [
                r["label"],
                f"{r['mflops']:.3f}",
                f"{r['auc'][0]:.4f} ± {r['auc'][1]:.4f}",
                f"{r['logloss'][0]:.4f} ± {r['logloss'][1]:.4f}",
                ", ".join(map(str, r["best_steps"])),
            ]
            for r in rows
        ],
        headers=["model", "MFLOP/example", "test AUC", "test LogLoss", "best step per seed"],
        tablefmt="github",
        disable_numparse=True,
    )
    print(table)
    if not args.no_write:
        write(table, rows, args.seeds, args.synthetic_rows)


def write(table: str, rows: list[dict], seeds: list[int], synthetic_rows: int = 0) -> None:
    preset = (ROOT / "configs" / f"{PRESET}.yaml").read_text()
    baselines = [r for r in rows if not r["label"].startswith("Wukong")]
    best_baseline = max(baselines, key=lambda r: r["auc"][0])
    best_wukong = max((r for r in rows if r["label"].startswith("Wukong")), key=lambda r: r["auc"][0])
    gap = best_wukong["auc"][0] - best_baseline["auc"][0]
    noise = max(best_wukong["auc"][1], best_baseline["auc"][1])
    verdict = (
        f"Best Wukong variant ({best_wukong['label']}) vs best baseline ({best_baseline['label']}): "
        f"{gap:+.4f} test AUC, {abs(gap) / noise if noise else float('inf'):.1f}x the larger seed standard deviation "
        f"({noise:.4f}). "
        + (
            "Wukong is at least as good as the best baseline on this data."
            if gap >= 0
            else "Wukong is not better than the best baseline on this data."
        )
    )
    if synthetic_rows:
        SYNTHETIC.write_text(f"""# Results on synthetic data with planted interactions of order 2, 3 and 4

Produced by `python benchmarks/results_movielens.py --synthetic-rows {synthetic_rows}` on {datetime.date.today()}
(CPU, one process per run): {synthetic_rows:,} Criteo-shaped rows from `--source synthetic` (seed 0), whose
labels come from a planted model with feature interactions of order 2, 3 and 4 (see
`wukong/data/sources/synthetic.py`); split 80/10/10; every model with the `{PRESET}` preset's budget;
seeds {", ".join(map(str, seeds))}; test split; mean ± standard deviation.

{table}

{verdict}

Every model peaks after its first epoch (the best step is the first epoch's last) and then
overfits: at this size the per-id embeddings the planted interactions need cannot be learnt well
enough for the interaction architecture to matter. A fair test of the paper's claim needs far more
rows per id (millions of rows, as in Criteo) and a GPU budget.
""")
        print(f"written to {SYNTHETIC}")
        return
    text = f"""# Results on real data: MovieLens ml-latest-small

Produced by `python benchmarks/results_movielens.py` on {datetime.date.today()} (CPU, one process per run).

Task: ratings as clicks (label = rating ≥ 4), 100,836 ratings from `../shared/data/ml-latest-small`,
split 80/10/10 by a seeded hash of the row (seed 0); vocabularies fitted on the training split.
Every model: the `{PRESET}` preset below (same embedding layer, batch size, optimizers, epochs),
early stopping on validation AUC (the best validation checkpoint is the model), then evaluated on
the test split. Seeds {", ".join(map(str, seeds))} (model initialisation and data order); mean ± standard deviation.

{table}

{verdict}

What this data can and cannot show: ml-latest-small is small (80k training rows, 8 sparse features)
and dominated by user and movie effects, so every model reaches about the same AUC after 1-2 epochs
and then overfits; the paper's claim is about scaling with compute on billions of rows, which this
table cannot test. The synthetic source (`--source synthetic`), whose labels come from planted
interactions of order 2-4, is the place for that comparison at larger scale.

## Exact configuration

`configs/{PRESET}.yaml`:

```yaml
{preset.strip()}
```

Variant overrides: {"; ".join(f"{r['label']}: `{' '.join(r['overrides'])}`" for r in rows if r["overrides"])}.
"""
    RESULTS.write_text(text)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
