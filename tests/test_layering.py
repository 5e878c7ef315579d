"""Dependency direction: the model's dense part runs with torch alone; model and data know no orchestration."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wukong"
ORCHESTRATION = ("kfp", "kubernetes", "kubeflow", "torchx", "model_registry")


@pytest.mark.slow
def test_importing_the_model_does_not_import_torchrec() -> None:
    code = (
        "import sys, torch; import wukong.model as m; "
        "arch = m.build_arch('wukong', 5, __import__('wukong.config').config.ModelConfig()); "
        "arch(torch.randn(2, 5, 128)); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torchrec', 'fbgemm_gpu')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("subpackage", ["model", "data", "experiments"])
def test_model_and_data_never_import_orchestration(subpackage: str) -> None:
    offenders = []
    for path in (PACKAGE / subpackage).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ORCHESTRATION]
    assert not offenders


def test_the_pipelines_light_steps_do_not_import_torch() -> None:
    """Gate, registration, report, the local runner and a tuning plan name metrics and draw trials without
    loading torch (seconds per step)."""
    code = (
        "import sys, wukong.pipeline.steps, wukong.pipeline.report, wukong.pipeline.local; "
        "from wukong.experiments.tune_stages import StagedSearch; "
        "StagedSearch('d', ('wukong', 'dlrm'), 'recipe', 4, 2, preset='movielens').plan(1); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchmetrics', 'torchrec')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
