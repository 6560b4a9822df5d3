"""Atomic, periodic checkpoints of a distillation run, so a preempted or requeued job resumes where it was.

The engine draws every random number from generators seeded by (seed, outer iteration), so the state at
an iteration boundary is just the synthetic images, the image optimiser and the log: resuming from it
gives the same result as an uninterrupted run.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.results import load_tensor_file

CHECKPOINT_DIR = ".checkpoints"


@dataclass
class Checkpointer:
    path: Path
    every: int = 10

    def due(self, iteration: int) -> bool:
        return self.every > 0 and iteration % self.every == 0

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        return load_tensor_file(self.path)

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        os.close(fd)
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def checkpoint_for(root: Path, cell_id: str, every: int) -> Checkpointer:
    return Checkpointer(root / CHECKPOINT_DIR / f"{cell_id}.pt", every)
