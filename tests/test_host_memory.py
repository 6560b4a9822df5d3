"""keeping_freed_memory: inside the block freed CPU tensors stay mapped for reuse; after it they go back."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import os, sys, torch
from bench.core.host_memory import keeping_freed_memory
page = os.sysconf("SC_PAGE_SIZE")
def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
def released_after_free():
    big = torch.ones(64 * 2**20)   # 256 MiB, written so its pages are resident
    before = resident_mib()
    del big
    return before - resident_mib()
if sys.argv[1] == "off":
    print(None, released_after_free(), 0.0)
else:
    with keeping_freed_memory() as applied:
        inside = released_after_free()
        before_exit = resident_mib()
    print(applied, inside, before_exit - resident_mib())
"""
OTHER_ALLOCATOR = "malloc" in os.environ.get("LD_PRELOAD", "") or any(
    k.startswith(("MALLOC_", "GLIBC_TUNABLES")) for k in os.environ
)


def released_mib(mode: str) -> tuple[str, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DREAMBENCH_KEEP_FREED_MEMORY": "1"},
    ).stdout.split()
    return out[0], float(out[1]), float(out[2])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or OTHER_ALLOCATOR,
    reason="glibc's malloc with its defaults, and /proc, are needed",
)
def test_freed_memory_is_kept_inside_the_block_and_returned_after_it():
    _, released_by_default, _ = released_mib("off")
    applied, released_inside, released_on_exit = released_mib("on")
    assert released_by_default > 200  # glibc: a 256 MiB block is mmapped and unmapped on free
    assert applied == "True"
    assert released_inside < 16  # kept in the heap for the next allocation
    assert released_on_exit > 200  # given back when the block ends


def test_the_switch_turns_it_off(monkeypatch):
    from bench.core.host_memory import SWITCH, keeping_freed_memory

    monkeypatch.setenv(SWITCH, "0")
    with keeping_freed_memory() as applied:
        assert applied is False
