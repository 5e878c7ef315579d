"""``train.malloc`` / ``data prepare --malloc``: with ``retain`` a step's freed blocks are reused, not faulted
in again, in the process and in the processes it starts."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from wukong.config import ConfigError, load_config
from wukong.malloc import TUNABLES, child_tunables, configure_malloc

# A "step" that allocates, writes and frees a 64 MiB tensor, as a training step does its activations;
# the page faults it takes per step once warm. glibc's defaults serve a block above 32 MiB (the most
# its adaptive mmap threshold reaches) with a fresh mmap every time, whatever the thread count.
STEP_FAULTS = """
import resource, sys, torch
from wukong.malloc import configure_malloc
if sys.argv[1] != "inherited":
    print(configure_malloc(sys.argv[1]), file=sys.stderr)
def step():
    block = torch.ones(16 << 20)
    del block
for _ in range(8):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_step(mode: str, tunables: str = "") -> float:
    """Page faults per step in a fresh process (the settings are process-wide) with ``train.malloc=mode``
    (``inherited``: none set in the child, only the ``GLIBC_TUNABLES`` it is started with)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}  # a test may have set retain's
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    command = [sys.executable, "-c", STEP_FAULTS, mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_retain_stops_the_page_faults_of_every_step() -> None:
    system, retain = faults_per_step("system"), faults_per_step("retain")
    assert system > 4000  # glibc unmaps the block after each step and faults its 16,384 pages in again
    assert retain < 100  # the same block, from the heap
    # a process started by a retaining one (a forkserver's ingest workers) retains too, untold
    assert faults_per_step("inherited", child_tunables("")) < 100


def test_children_get_the_thresholds_unless_the_user_set_them() -> None:
    mmap, trim = (f"{name}={value}" for name, value in TUNABLES.items())
    assert child_tunables("") == f"{mmap}:{trim}"
    user = "glibc.malloc.trim_threshold=1048576:glibc.cpu.hwcaps=-AVX512F"
    assert child_tunables(user) == f"{user}:{mmap}"  # the user's trim threshold stays, and only once


def test_modes_are_checked() -> None:
    assert load_config("tiny").train.malloc == "retain"
    assert load_config("tiny", ["train.malloc=system"]).train.malloc == "system"
    with pytest.raises(ConfigError, match=r"train.malloc must be one of retain, system, got 'jemalloc'"):
        load_config("tiny", ["train.malloc=jemalloc"])
    with pytest.raises(ValueError, match=r"train\.malloc must be one of"):
        configure_malloc("jemalloc")
    assert "defaults" in configure_malloc("system")


def test_prepare_logs_its_mode(tmp_path, capsys) -> None:
    from wukong.cli import main

    args = ["data", "prepare", "--source", "synthetic", "--rows", "2000", "--output", str(tmp_path / "ds")]
    assert main([*args, "--malloc", "system"]) == 0
    assert "malloc: the C library's defaults" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--malloc", "tcmalloc"])
    assert exit_.value.code == 2
