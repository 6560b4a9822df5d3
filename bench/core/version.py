"""What code produced a result: the code version (bumped when a change alters results), the record schema,
the git commit of the loaded code, and the machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

CODE_VERSION = "0.3.0"  # bump when a change alters results: every earlier record becomes stale
SCHEMA_VERSION = 2  # the layout of result.json (bench.experiment.record); older ones are upgraded on read


@functools.lru_cache(maxsize=1)
def code_state() -> dict[str, Any]:
    """The git commit of the code that ran, and whether the tree had uncommitted changes ('unknown' outside git;
    ``DREAMBENCH_SOURCE_COMMIT`` names it for a copy run elsewhere, since a copied .git can be stale).
    Cached from the first call, which this module makes when it is imported, so a process that runs for hours
    records the commit whose code it loaded even if HEAD moves meanwhile."""
    sent = os.environ.get("DREAMBENCH_SOURCE_COMMIT")
    if sent:  # a copy sent elsewhere (a GPU lease) whose .git, if any, may be stale: the sender names the commit
        return {"git_commit": sent, "git_dirty": None}
    here = Path(__file__).resolve().parent.parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}
    if commit.returncode != 0:
        return {"git_commit": "unknown", "git_dirty": None}
    return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}


code_state()  # read when the code is loaded, not when a record is written: HEAD may move during a long run


def machine_label() -> str:
    """The GPU's name, or the CPU's thread count and architecture."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}"
    return f"CPU x{torch.get_num_threads()} ({platform.machine()})"
