"""While a cell runs, keep freed host memory inside the process, so large CPU tensors are not page-faulted in anew.

glibc's malloc serves every allocation above 32 MiB (at first above 128 KiB) with a fresh ``mmap`` and unmaps
it on free. A ConvNet-3 training step on MNIST allocates activations of ~50 MiB (100 images x 128 channels x
32 x 32, the first layer pads 28 to 32), so every step faulted in and zeroed those pages again: 1.28x slower per
evaluation step on the 2-core development machine (docs/performance.md). Inside ``keeping_freed_memory``
glibc takes every block from its heap and keeps freed pages for the next step; on leaving it, the defaults come
back and the free pages are returned to the system, so a process that runs many cells holds no more between
them than before. What is computed does not change. ``DREAMBENCH_KEEP_FREED_MEMORY=0`` turns it off.
Written here rather than preloading jemalloc/tcmalloc: those are system packages, not pip dependencies.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from typing import Iterator

# mallopt parameters and glibc's defaults for them (malloc.h, malloc.c)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEPT_TRIM_THRESHOLD = 1 << 30  # no heap top grows this large between two steps
SWITCH = "DREAMBENCH_KEEP_FREED_MEMORY"


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc with no other allocator preloaded and the switch is on (else
    None: leave it alone)."""
    if os.environ.get(SWITCH, "1") == "0" or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    return _glibc_symbols()


@functools.lru_cache(maxsize=1)
def _glibc_symbols() -> ctypes.CDLL | None:
    """glibc with mallopt and malloc_trim typed, looked up once per process; None on other C libraries."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    try:
        for name in ("mallopt", "malloc_trim", "gnu_get_libc_version"):  # musl has no gnu_get_libc_version
            getattr(libc, name)
    except AttributeError:
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


_depth = 0  # nested blocks (a cell inside a command) restore the defaults only when the outermost ends


@contextlib.contextmanager
def keeping_freed_memory() -> Iterator[bool]:
    """Within the block, large blocks come from the heap and freed ones stay mapped for reuse; after it, glibc's
    defaults return and free pages go back to the system. Yields whether the setting applies here."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    if _depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
