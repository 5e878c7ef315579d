"""Keep freed host memory in the training process (``train.malloc``).

A training step allocates and frees the same tensors every step: activations, their gradients and
the temporaries of each op, many of them megabytes (``(B, n, d)`` blocks of the interaction arch).
glibc's ``malloc`` serves a block above its *mmap threshold* with a fresh ``mmap`` and gives it back
with ``munmap`` when freed, and it returns (``trim``) the free top of its heap to the kernel once
that exceeds the *trim threshold*. Both start small (128 KiB) and adapt only partly, so every step
asks the kernel for the same memory again, and every fresh page costs a page fault and a zeroing
before the op that wrote it can run. At about 1 MFLOP/example that was a few thousand faults per
step on this project's CPU hosts and a fifth of the step time (docs/benchmarks.md).

``retain`` (the default) raises both thresholds, so that a step's blocks come from the heap and
stay there for the next step: the process keeps its peak working set, as every caching allocator
does (PyTorch's CUDA allocator, jemalloc, tcmalloc). ``system`` leaves glibc's behaviour alone.
Only glibc has these settings; elsewhere (macOS, musl) ``retain`` changes nothing and says so.
Set before the first step, they hold for the whole process (its DataLoader workers inherit them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from wukong.config import MALLOC_MODES

M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, not a fresh mmap each
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free heap top (mallopt takes an int)


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def configure_malloc(mode: str) -> str:
    """Apply ``train.malloc`` to this process; returns a line for the log saying what it did.

    Raises ValueError for an unknown mode and RuntimeError if glibc refuses a setting."""
    if mode not in MALLOC_MODES:
        raise ValueError(f"train.malloc must be one of {', '.join(MALLOC_MODES)}, got {mode!r}")
    if mode == "system":
        return "malloc: the C library's defaults (train.malloc=system)"
    libc = _glibc()
    if libc is None:
        return f"malloc: train.malloc=retain has no effect with this C library ({platform.libc_ver()[0] or 'unknown'})"
    for parameter, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if libc.mallopt(parameter, value) != 1:
            raise RuntimeError(f"glibc mallopt({parameter}, {value}) failed")
    return (
        "malloc: freed host memory stays in the process for the next step (glibc mmap threshold 1 GiB, "
        "trim threshold 2 GiB; train.malloc=system keeps glibc's defaults)"
    )
