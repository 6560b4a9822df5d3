"""Keep freed host memory inside the process, so that large CPU tensors are not page-faulted in anew each time.

glibc's malloc serves every allocation above 32 MiB (and, at first, above 128 KiB) with a fresh ``mmap`` and
returns it to the system on free. A ConvNet-3 training step on MNIST allocates activations of 40 MiB (100 images x
128 channels x 28 x 28), so every step faults in and zeroes those pages again: on the 2-core development machine
that made one step 1.3-1.5x slower (README, "Speed on this CPU"). Asking glibc to take everything from its heap
and never trim it keeps those pages mapped for reuse; what is computed does not change. The cost is that a
process keeps its peak heap until it exits, which suits the short-lived processes that run cells.
Written here rather than preloading jemalloc/tcmalloc: those are system packages, not pip dependencies.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse (idempotent); False where the C library is not glibc."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # no mmap for large blocks (they come from the heap), and a trim threshold no heap reaches (1 GiB free at the top)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
