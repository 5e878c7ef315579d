"""benchmarks/gpu_dense.py on CPU: a tiny run end to end (JSON, table, doc section, re-rendering), bad
usage, and the import chain that must work on a GPU machine with torch alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
# Not installed on the GPU machines the benchmark is meant for (only torch and its usual company is).
ABSENT_THERE = ("torchrec", "fbgemm_gpu", "kfp", "pyarrow", "webdataset", "boto3", "omegaconf", "yaml")
TINY = ["--device", "cpu", "--models", "dlrm", "--mflops", "0.3", "--batch", "32", "--seconds", "0.02"]
TINY += ["--warmup", "1", "--peak-size", "64", "--peak-seconds", "0.01"]


@pytest.fixture
def gpu_dense(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The benchmark module, its docs/benchmarks.md redirected to a copy in ``tmp_path``."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import benchmarks_doc
    import gpu_dense

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nabove\n\n<!-- gpu_dense:begin -->\nnot yet run\n<!-- gpu_dense:end -->\n\nbelow\n")
    monkeypatch.setattr(benchmarks_doc, "DOC", doc)
    return gpu_dense


@pytest.mark.slow
def test_a_tiny_cpu_run_reports_every_point(gpu_dense: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "dense.json"
    assert gpu_dense.main([*TINY, "--modes", "fp32,bf16", "--out", str(out), "--write"]) == 0

    report = json.loads(out.read_text())
    assert report["complete"] and report["device"]["type"] == "cpu"
    assert report["device"]["bf16_peak_tflops_spec"] is None  # no datasheet peak for a CPU
    assert set(report["measured_peak_tflops"]) == {"bfloat16", "float32"}
    assert all(peak > 0 for peak in report["measured_peak_tflops"].values())
    assert [(p["model"], p["mode"]) for p in report["points"]] == [("dlrm", "fp32"), ("dlrm", "bf16")]
    for point in report["points"]:
        assert point["error"] is None
        assert point["mflops_per_example"] == pytest.approx(0.3, rel=0.05)  # sized by the scaling rule
        assert point["examples_per_s"] > 0 and point["dense_params"] > 0
        # a training step = 3 × the forward FLOPs (DLRM has no per-batch FLOPs)
        expected = 3 * point["mflops_per_example"] * 1e6 * point["examples_per_s"] / 1e12
        assert point["tflops"] == pytest.approx(expected, rel=1e-6)
        dtype = "bfloat16" if point["mode"] == "bf16" else "float32"
        assert point["mfu_measured"] == pytest.approx(point["tflops"] / report["measured_peak_tflops"][dtype])
        assert point["mfu_spec"] is None and point["compile_s"] is None  # eager: nothing compiled

    doc = (tmp_path / "benchmarks.md").read_text()
    section = doc.split("<!-- gpu_dense:begin -->\n")[1].split("\n<!-- gpu_dense:end -->")[0]
    assert doc.startswith("# Benchmarks\n\nabove\n") and doc.endswith("\nbelow\n") and "not yet run" not in doc
    table_rows = [line for line in section.splitlines() if line.startswith("| dlrm")]
    assert [line.split("|")[3].strip() for line in table_rows] == ["fp32", "bf16"]
    assert section == gpu_dense.render([report])  # the JSON alone renders the same section (remote runs)


def test_bad_usage_exits_2_with_one_line(gpu_dense: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, says in (
        (["--device", "cpu", "--models", "dlrm,nope"], "--models: unknown nope"),
        (["--device", "cpu", "--modes", "fp16"], "--modes: unknown fp16"),
        (["--device", "cpu", "--mflops", "ten"], "--mflops: expected comma-separated numbers"),
        (["--device", "cpu", "--warmup", "0"], "--warmup must be > 0"),
        (["--device", "cpu", "--models", "wukong", "--mflops", "1e-6"], "--mflops: wukong: cannot reach"),
        (["--render", "/nonexistent/report.json"], "--render: cannot read a report"),
    ):
        with pytest.raises(SystemExit) as exit_:
            gpu_dense.main(argv)
        assert exit_.value.code == 2
        assert says in capsys.readouterr().err


@pytest.mark.slow
def test_runs_where_only_torch_is_installed() -> None:
    """A fresh interpreter in which the project's heavier dependencies cannot be imported at all: the
    benchmark's module, the sizing and a training step still work."""
    code = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {ABSENT_THERE!r}:
            raise ImportError(f"{{name}} is not installed on a GPU machine")
sys.meta_path.insert(0, Absent())
sys.path.insert(0, {str(BENCHMARKS)!r})
import torch, gpu_dense
from wukong.model.build import build_arch
config = gpu_dense.sized_configs(["wukong"], [0.3])[("wukong", 0.3)]
arch = build_arch("wukong", gpu_dense.NUM_FEATURES, config, gpu_dense.DENSE_ROWS)
mode = gpu_dense.MODES["bf16"]
gpu_dense.train_step(arch, config.embedding_dim, mode, "default", 4, torch.device("cpu"))()
print(sorted(m for m in sys.modules if m.split(".")[0] in {ABSENT_THERE!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
