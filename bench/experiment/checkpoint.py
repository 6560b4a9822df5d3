"""Atomic, periodic checkpoints of a distillation run, so a preempted or requeued job resumes where it was.

The engine draws every random number from generators seeded by (seed, outer iteration), so the state at
an iteration boundary is just the synthetic images, the image optimiser and the log: resuming from it
gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from bench.core.files import UnsafeFileError, atomic_save_tensors, load_tensor_file
from bench.experiment.store import ASIDE_DIR, move_aside, own_subfolder

CHECKPOINT_DIR = ".checkpoints"


# what the engine's checkpoint holds (methods/engine.py): a checkpoint without one of these is not resumed
CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "param": torch.Tensor,
    "opt_img": dict,
    "iteration": int,
    "log": list,
    "timings": dict,
}


@dataclass
class Checkpointer:
    """Saves and restores one cell's run state; a checkpoint written under other settings is never resumed."""

    path: Path
    every: int = 10
    fingerprint: str = ""
    root: Path | None = None  # the results folder: an unreadable checkpoint is moved to its .aside/

    def due(self, iteration: int) -> bool:
        return self.every > 0 and iteration % self.every == 0

    def load(self) -> dict[str, Any] | None:
        try:
            if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                raise UnsafeFileError(f"{self.path}: not a regular file")  # it would fail every save
            if not self.path.is_file() and not self._restore_set_aside():
                return None
            state = load_tensor_file(self.path)
            if not isinstance(state, dict) or "fingerprint" not in state:
                raise UnsafeFileError(f"{self.path}: not a checkpoint (no fingerprint)")
            if state["fingerprint"] == self.fingerprint:
                wrong = [k for k, kind in CHECKPOINT_FIELDS.items() if not isinstance(state.get(k), kind)]
                if wrong or isinstance(state["iteration"], bool) or state["iteration"] < 1:
                    raise UnsafeFileError(f"{self.path}: not a whole checkpoint ({', '.join(wrong) or 'iteration'})")
        except UnsafeFileError as err:
            if self.root is None:
                raise
            target = move_aside(self.root, self.path.stem, "checkpoint-unreadable", self.path)
            print(f"ignoring checkpoint: {err}; moved to {target}")
            return self._resume_set_aside()
        if state["fingerprint"] != self.fingerprint:
            if self.root is None:
                print(f"ignoring checkpoint {self.path}: written with other settings; starting this cell afresh")
                return None
            # another configuration's work in progress (say, a real run's, during a smoke run): kept, never deleted
            target = move_aside(self.root, self.path.stem, "checkpoint-other-settings", self.path)
            print(f"checkpoint {self.path} was written with other settings: moved to {target}")
            return self._resume_set_aside()
        print(f"resuming {self.path.stem} from its checkpoint after iteration {state.get('iteration', '?')}")
        return state

    def _resume_set_aside(self) -> dict[str, Any] | None:
        """After the checkpoint in the way was moved aside: this run's own set-aside one, if any, else afresh."""
        if self._restore_set_aside():
            return self.load()
        print(f"starting {self.path.stem} afresh")
        return None

    def _restore_set_aside(self) -> bool:
        """Put back the newest checkpoint that a run under other settings moved aside, if it was written under
        this run's settings: the real run resumes after a smoke run instead of starting over."""
        if self.root is None or not (self.root / ASIDE_DIR).is_dir():
            return False
        pattern = f"{glob.escape(self.path.stem)}.checkpoint-other-settings.*"
        for candidate in sorted(_regular_files((self.root / ASIDE_DIR).glob(pattern)), key=_mtime, reverse=True):
            try:
                state = load_tensor_file(candidate)
            except (UnsafeFileError, OSError):  # a file another run took meanwhile, or not a tensor file
                continue
            if isinstance(state, dict) and state.get("fingerprint") == self.fingerprint:
                try:
                    os.replace(candidate, self.path)
                except FileNotFoundError:  # restored by another run meanwhile
                    continue
                print(f"restored {candidate.name} from {ASIDE_DIR}/: it was written under these settings")
                return True
        return False

    def save(self, state: dict[str, Any]) -> None:
        atomic_save_tensors({**state, "fingerprint": self.fingerprint}, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _regular_files(paths: Iterable[Path]) -> list[Path]:
    """The regular files among ``paths``, not following links (a dangling link or a loop is skipped)."""
    return [p for p in paths if _mtime(p) >= 0]


def _mtime(path: Path) -> float:
    """The file's modification time, or -1 for a link, a non-file or a file that vanished."""
    try:
        info = path.lstat()
    except OSError:
        return -1.0
    return info.st_mtime if stat.S_ISREG(info.st_mode) else -1.0


def checkpoint_for(root: Path, cell_id: str, every: int, fingerprint: str = "") -> Checkpointer:
    """The checkpoint file of one cell, in the results folder's own (checked) checkpoint folder."""
    return Checkpointer(own_subfolder(root, CHECKPOINT_DIR) / f"{cell_id}.pt", every, fingerprint, root)
