"""keep_freed_memory: freed CPU tensors stay mapped for reuse instead of going back to the system."""
import subprocess
import sys

import pytest

CHILD = """
import sys, torch
from bench.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else None
def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
big = torch.ones(64 * 2**20)   # 256 MiB, written so its pages are resident
before = resident_mib()
del big
print(applied, before - resident_mib())
"""


def released_mib(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and /proc are Linux's")
def test_freed_tensor_memory_is_kept_only_when_asked():
    applied, released_on = released_mib("on")
    _, released_off = released_mib("off")
    assert applied == "True"
    assert released_off > 200      # default glibc: a 256 MiB block is mmapped and unmapped on free
    assert released_on < 16        # kept in the heap for the next allocation

