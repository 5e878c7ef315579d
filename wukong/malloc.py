"""Keep freed host memory in the process (``train.malloc``, ``wukong data prepare --malloc``).

A training step allocates and frees the same tensors every step: activations, their gradients and
the temporaries of each op, many of them megabytes (``(B, n, d)`` blocks of the interaction arch).
glibc's ``malloc`` serves a block above its *mmap threshold* with a fresh ``mmap`` and gives it back
with ``munmap`` when freed, and it returns (``trim``) the free top of its heap to the kernel once
that exceeds the *trim threshold*. Both start at 128 KiB and adapt only partly (the mmap threshold
to at most 32 MiB), so every step asks the kernel for the same memory again, and every fresh page
costs a page fault and a zeroing before the op that wrote it can run: a few thousand faults per step
at about 1 MFLOP/example, and a fifth to a third of the step time on this project's CPU hosts
(docs/benchmarks.md). Ingest's parts (numpy buffers beside Arrow's own pool) fault the same way.

``retain`` raises both thresholds, so that a step's blocks come from the heap and stay there for the
next step: the process keeps its peak working set, as every caching allocator does (PyTorch's CUDA
allocator, jemalloc, tcmalloc). It applies to this process (``mallopt``) and, through
``GLIBC_TUNABLES``, to the processes it starts from then on (a forkserver's ingest workers, torchrun's
ranks); forked children inherit it anyway. ``system`` changes nothing: glibc's defaults, or what
``GLIBC_TUNABLES`` gave the process when it started. Only glibc has
these settings; elsewhere (macOS, musl) ``retain`` changes nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from wukong.config import MALLOC_MODES

M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, not a fresh mmap each
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free heap top (mallopt takes an int)
TUNABLES = {"glibc.malloc.mmap_threshold": MMAP_THRESHOLD, "glibc.malloc.trim_threshold": TRIM_THRESHOLD}


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def child_tunables(current: str) -> str:
    """``GLIBC_TUNABLES`` for child processes: ``current`` plus the retain thresholds, except a
    threshold ``current`` already sets (the user's choice wins)."""
    entries = [e for e in current.split(":") if e]
    given = {e.split("=", 1)[0] for e in entries}
    entries += [f"{name}={value}" for name, value in TUNABLES.items() if name not in given]
    return ":".join(entries)


def configure_malloc(mode: str) -> str:
    """Apply ``mode`` to this process and the ones it starts; returns a line for the log saying what it did.

    Raises ValueError for an unknown mode and RuntimeError if glibc refuses a setting."""
    if mode not in MALLOC_MODES:
        raise ValueError(f"train.malloc must be one of {', '.join(MALLOC_MODES)}, got {mode!r}")
    if mode == "system":
        return "malloc: the C library's defaults (malloc mode system)"
    libc = _glibc()
    if libc is None:
        return f"malloc: mode retain has no effect with this C library ({platform.libc_ver()[0] or 'unknown'})"
    for parameter, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if libc.mallopt(parameter, value) != 1:
            raise RuntimeError(f"glibc mallopt({parameter}, {value}) failed")
    os.environ["GLIBC_TUNABLES"] = child_tunables(os.environ.get("GLIBC_TUNABLES", ""))
    return (
        "malloc: freed host memory stays in the process for reuse (glibc mmap threshold 1 GiB, trim "
        "threshold 2 GiB; malloc mode system keeps glibc's defaults)"
    )
