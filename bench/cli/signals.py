"""SIGTERM (``timeout``, ``kill``, a scheduler ending a job) ends a command the way Ctrl-C does: one line saying
how far it got, checkpoints kept, exit code 143 (128 + 15) instead of 130."""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so every ``except KeyboardInterrupt`` clean-up runs for it too."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def end_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` (main thread only, where signal handlers may be set)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def stopped(err: KeyboardInterrupt) -> tuple[str, int]:
    """How an interrupted command says it stopped, and its exit code."""
    return ("terminated", 143) if isinstance(err, Terminated) else ("interrupted", 130)
