"""The ``wukong`` command as a user runs it (a real subprocess for the entry point, main() otherwise)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wukong.cli import main


def test_help_lists_every_subcommand() -> None:
    result = subprocess.run([sys.executable, "-m", "wukong", "--help"], capture_output=True, text=True, check=True)
    for command in ("data", "train", "evaluate", "registry", "pipeline", "bench", "models", "config"):
        assert f"    {command} " in result.stdout


def test_models_prints_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert set(rows) == {"wukong", "dlrm", "dcnv2", "finalmlp"}
    assert rows["dlrm"][1] == "96,000"  # 6 tables x 1000 rows x d=16


def test_models_honours_set(capsys: pytest.CaptureFixture[str]) -> None:
    main(["models", "--config", "tiny", "--models", "wukong"])
    two_layers = capsys.readouterr().out.splitlines()[-1].split()
    main(["models", "--config", "tiny", "--models", "wukong", "--set", "model.num_layers=4"])
    four_layers = capsys.readouterr().out.splitlines()[-1].split()
    assert float(four_layers[-1]) > float(two_layers[-1])


@pytest.mark.slow
def test_bad_override_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wukong", "models", "--set", "model.num_layer=4"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown key 'model.num_layer'" in result.stderr and "num_layers" in result.stderr


def test_config_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", "tiny", "--set", "model.num_layers=7"]) == 0
    assert "num_layers: 7" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "--frobnicate"])
    assert exit_info.value.code == 2


def test_torchs_deprecation_notice_about_torchrec_is_not_shown() -> None:
    """torch logs once that TorchRec calls its deprecated ``is_fx_tracing``: noise a user cannot act on."""
    code = "import torchrec, torch.fx._symbolic_trace as t; from wukong.cli import main; main(['models']); "
    code += "t.is_fx_tracing()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "is_fx_tracing" not in result.stderr
    unsilenced = subprocess.run([sys.executable, "-c", code.replace("main(['models']); ", "")], capture_output=True,
                                text=True, check=True)  # fmt: skip
    assert "is_fx_tracing will return true" in unsilenced.stderr  # the notice this test is about still exists
