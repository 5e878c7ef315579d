"""``train.malloc``: with ``retain`` a step's freed blocks are reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from wukong.config import ConfigError, load_config
from wukong.train.malloc import configure_malloc

# A "step" that allocates, writes and frees a 64 MiB tensor, as a training step does its activations;
# the page faults it takes per step once warm. glibc's defaults serve a block above 32 MiB (the most
# its adaptive mmap threshold reaches) with a fresh mmap every time, whatever the thread count.
STEP_FAULTS = """
import resource, sys, torch
from wukong.train.malloc import configure_malloc
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


def faults_per_step(mode: str) -> float:
    """Page faults per step in a fresh process (the settings are process-wide) with ``train.malloc=mode``."""
    done = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_retain_stops_the_page_faults_of_every_step() -> None:
    system, retain = faults_per_step("system"), faults_per_step("retain")
    assert system > 4000  # glibc unmaps the block after each step and faults its 16,384 pages in again
    assert retain < 100  # the same block, from the heap


def test_modes_are_checked() -> None:
    assert load_config("tiny").train.malloc == "retain"
    assert load_config("tiny", ["train.malloc=system"]).train.malloc == "system"
    with pytest.raises(ConfigError, match=r"train.malloc must be one of retain, system, got 'jemalloc'"):
        load_config("tiny", ["train.malloc=jemalloc"])
    with pytest.raises(ValueError, match=r"train\.malloc must be one of"):
        configure_malloc("jemalloc")
    assert "defaults" in configure_malloc("system")
