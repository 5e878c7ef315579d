"""The results table: mean ± std over seeds, the 2σ verdict, and benchmarks/results.py end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wukong.config import load_config, save_config
from wukong.experiments.compare import Entry, Row, headline, table, verdict

from .conftest import QUICK

ROOT = Path(__file__).resolve().parents[2]


def row(label: str, model: str, aucs: list[float]) -> Row:
    records = [
        {
            "status": "ok",
            "mflops_per_example": 0.1,
            "best_step": 10,
            "valid": {"auc": a},
            "test": {"auc": a, "logloss": 0.5},
        }
        for a in aucs
    ]
    return Row(Entry(label, model, "tiny"), records)


def test_two_sigma_rule() -> None:
    wukong = row("Wukong", "wukong", [0.80, 0.81, 0.82])  # mean 0.81, std 0.01
    assert verdict(wukong, row("DLRM", "dlrm", [0.78, 0.785, 0.78]))[0] == "better"  # gap 0.0283 >= 0.02
    assert verdict(wukong, row("DCNv2", "dcnv2", [0.80, 0.80, 0.805]))[0] == "tie"  # gap 0.0083 < 0.02
    assert verdict(row("DLRM", "dlrm", [0.70, 0.70, 0.70]), wukong)[0] == "worse"


def test_table_and_headline() -> None:
    rows = [row("Wukong", "wukong", [0.80, 0.81, 0.82]), row("DLRM", "dlrm", [0.78, 0.785, 0.78])]
    rows.append(Row(Entry("DCNv2", "dcnv2", "tiny"), [{"status": "failed", "error": "boom"}]))
    text = table(rows)
    assert "0.8100 ± 0.0100" in text and "| best" in text and "below best" in text and "| failed" in text
    assert "Wukong is better than the best baseline by more than 2σ" in headline(rows)


@pytest.mark.slow
def test_results_script_on_a_prepared_dataset_with_a_tuned_preset(teacher_data: str, tmp_path: Path) -> None:
    tuned = tmp_path / "tune" / "dlrm"
    tuned.mkdir(parents=True)
    save_config(load_config("tiny", ["model.name=dlrm", "model.dlrm.top_mlp=[48]"]), tuned / "best.yaml")
    output = tmp_path / "results.md"
    output.write_text("# Results\n\nProse before.\n<!-- results:begin -->\nold\n<!-- results:end -->\nProse after.\n")
    sets = [item for o in [*QUICK, "train.max_steps=10"] for item in ("--set", o)]
    command = [sys.executable, str(ROOT / "benchmarks" / "results.py"), "--data", teacher_data, "--models"]
    command += ["wukong,dlrm", "--seeds", "0", "1", "--config", "tiny", "--tuned", str(tmp_path / "tune"), *sets]
    command += ["--work", str(tmp_path / "work"), "--output", str(output), "--parallel", "2"]
    command += ["--variant", "DLRM dropout", "dlrm", "model.mlp_dropout=0.1"]
    subprocess.run(command, check=True, capture_output=True)
    text = output.read_text()
    assert text.startswith("# Results\n\nProse before.\n<!-- results:begin -->") and text.endswith("Prose after.\n")
    assert "old" not in text and f"DLRM: `{tuned / 'best.yaml'}`" in text and "Wukong: `tiny`" in text
    # A variant starts from its model's tuned preset, not from --config.
    assert f"DLRM dropout: `{tuned / 'best.yaml'}`" in text
    lines = [line for line in text.splitlines() if line.startswith(("| Wukong", "| DLRM"))]
    assert len(lines) == 3 and all(line.count("±") == 3 for line in lines)
    assert "Best Wukong (Wukong" in text
    assert len((tmp_path / "work" / "results.jsonl").read_text().splitlines()) == 6
