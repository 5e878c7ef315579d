"""benchmarks/fuxictr_reference.py without FuxiCTR: this project's side of the comparison is the
reference's layer to the FLOP, and a missing reference source is a usage error."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from wukong.benchmark import SPEED_REFERENCE_PRESET, SPEED_REFERENCE_SETTINGS
from wukong.config import load_config
from wukong.model.build import build_arch
from wukong.model.flops import count_flops

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "fuxictr_reference.py"


@pytest.fixture
def reference(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import fuxictr_reference

    return fuxictr_reference


def reference_forward_flops(model: dict, fields: int) -> int:
    """FuxiCTR's WuKong at ``model``'s sizes, counted from its structure (2 FLOPs per multiply-add):
    per layer the FM's two products, the FMB's MLP from the ``n·k`` FM values to ``fmb_dim``, the LCB
    from the ``n·d`` flattened rows to ``compression_dim``, the transform back to ``n·d``; then the
    head from ``n·d`` through its hidden units to 1."""
    n, d, k = fields, model["embedding_dim"], model["project_dim"]
    flops = 0
    for _ in range(model["num_layers"]):
        flops += 2 * (2 * n * d * k)  # Xᵀ Y, then X (Xᵀ Y)
        widths = [n * k, *model["fmb_units"], model["fmb_dim"]]
        flops += sum(2 * a * b for a, b in itertools.pairwise(widths))
        flops += 2 * n * d * model["compression_dim"]
        flops += 2 * (model["fmb_dim"] + model["compression_dim"]) * n * d
    widths = [n * d, *model["mlp_hidden_units"], 1]
    return flops + sum(2 * a * b for a, b in itertools.pairwise(widths))


def test_the_compared_layer_is_the_references_to_the_flop(reference) -> None:
    cfg = load_config(SPEED_REFERENCE_PRESET, [*SPEED_REFERENCE_SETTINGS, *reference.SAME_LAYER])
    arch = build_arch("wukong", reference.FIELDS, cfg.model)
    assert count_flops(arch).per_example == reference_forward_flops(reference.REFERENCE_MODEL, reference.FIELDS)
    assert count_flops(arch).per_example == 1_650_688
    layers = arch.layers
    assert len(layers) == reference.REFERENCE_MODEL["num_layers"]
    assert all(layer.dropout.p == reference.REFERENCE_MODEL["dropout_rate"] for layer in layers)


def test_a_missing_reference_source_is_a_usage_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--fuxictr-src", str(tmp_path), "speed", "--no-write"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert f"--fuxictr-src {tmp_path}: no WuKong.py there" in run.stderr


def test_quality_without_its_splits_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "WuKong.py").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").write_bytes(b"")
    command = [sys.executable, str(SCRIPT), "--fuxictr-src", str(tmp_path / "src")]
    run = subprocess.run(
        [*command, "quality", "--data", str(tmp_path / "data")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "missing features.yaml, valid.parquet, test.parquet" in run.stderr
