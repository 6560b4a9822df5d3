"""File primitives every layer may use: tensor files that load without running code, atomic writes that
follow the user's umask, and advisory locks. (Results-folder rules live in ``bench.experiment.store``.)"""

from __future__ import annotations

import fcntl
import glob
import os
import pickle
import shutil
import stat
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

# numpy scalars (DC's result files store accuracies as numpy floats) rebuild data only, never run code
_NUMPY_CORE = getattr(np, "_core", None) or np.core
_DATA_ONLY_GLOBALS = [
    np.dtype,
    _NUMPY_CORE.multiarray.scalar,
    *{type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32")},
]


class UnsafeFileError(ValueError):
    """A tensor file that is unreadable, or that needs more than tensors and plain containers to load."""


def _numpy_format(path: Path | str) -> str | None:
    """'.npy' or '.npz' when the file is NumPy's (by its first bytes and, for a zip, its members), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
        if head == b"\x93NUMPY":
            return ".npy"
        if head[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if names and all(name.endswith(".npy") for name in names):
                return ".npz"
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def load_tensor_file(path: Path | str) -> Any:
    """``torch.load`` with ``weights_only=True``: a file that would run code (a pickled object) is refused, and
    a NumPy file is named as one (with how to convert it) rather than reported as an unreadable tensor file."""
    kind = _numpy_format(path)
    if kind:
        raise UnsafeFileError(
            f"{path}: a NumPy {kind} file; allowed: a torch file, e.g. torch.save({{'images': "
            "torch.from_numpy(images), 'labels': torch.from_numpy(labels)}, 'set.pt')"
        )
    try:
        with torch.serialization.safe_globals(_DATA_ONLY_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle warnings: a refusal below is one line of our own
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise UnsafeFileError(f"{path}: not a readable tensor file (UnpicklingError)") from None
        unsafe = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        detail = unsafe[0][:160] if unsafe else "it needs more than tensors"
        raise UnsafeFileError(f"{path}: refused to load (weights_only): {detail}") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise UnsafeFileError(f"{path}: not a readable tensor file ({type(err).__name__})") from None


def describe_os_error(err: OSError) -> str:
    """One line for an error of the file system: the path and the reason, e.g. 'x/results.csv: Is a directory'."""
    if isinstance(err, RefusedFileError) or not err.strerror:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    path = err.filename2 if err.filename2 is not None else err.filename  # a rename: where it was going
    return f"{path}: {err.strerror}" if path is not None else err.strerror


class RefusedFileError(OSError):
    """A path that is not a regular file (a FIFO, device, socket or directory, or a link to one) or is too large
    to read; the message is one line naming the path and what is allowed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: Path | str, max_bytes: int | None = None) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed), refusing anything but a regular file of at most ``max_bytes``
    with :class:`RefusedFileError`; a missing path raises FileNotFoundError. Never opens the path, so a FIFO
    or a device cannot block or be touched."""
    info = os.stat(path)
    _check_stat(path, info, max_bytes)
    return info


def _check_stat(path: Path | str, info: os.stat_result, max_bytes: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise RefusedFileError(f"{path}: {_kind(info.st_mode)}; allowed: a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise RefusedFileError(f"{path}: {info.st_size} bytes; allowed: a file of at most {max_bytes} bytes")


def read_regular_text(path: Path | str, max_bytes: int, encoding: str = "utf-8") -> str:
    """The text of a regular file of at most ``max_bytes`` bytes.

    Anything else (a FIFO, device, socket or directory, or a symbolic link to one) and larger files raise
    :class:`RefusedFileError` (an OSError with a one-line message) without blocking: the path is checked before
    it is opened, opened non-blocking, and checked again on the open descriptor (so a swap in between is caught).
    A missing file raises FileNotFoundError; undecodable bytes raise UnicodeDecodeError (a ValueError).
    """
    check_regular_file(path, max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as fh:
        _check_stat(path, os.fstat(fh.fileno()), max_bytes)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise RefusedFileError(f"{path}: more than {max_bytes} bytes; allowed: a file of at most {max_bytes} bytes")
    return data.decode(encoding)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path: Path, directory: bool) -> None:
    """mkdtemp/mkstemp create 0700/0600; give created files the modes the user's umask asks for."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        follow_umask(Path(tmp), directory=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place: a link at ``path`` is replaced,
    never written through, and readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        follow_umask(Path(tmp), directory=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a link at ``target`` is replaced, never written through)."""
    _atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def atomic_save_tensors(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


@contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock (flock) on ``path``; yields False when ``wait=False`` and another holds it.

    The lock file is opened without following a link and without blocking, and must be a regular file: a link,
    FIFO, device or directory in its place raises :class:`RefusedFileError` (one line), so a lock never creates
    or locks a file elsewhere and never hangs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0), 0o666 & ~_umask())
    except OSError as err:
        if not os.path.islink(path) and not os.path.exists(path):
            raise
        kind = "a symbolic link" if os.path.islink(path) else _kind(os.stat(path).st_mode)
        raise RefusedFileError(
            f"{path}: {kind} where a lock file belongs; allowed: a regular file (remove it)"
        ) from err
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise RefusedFileError(f"{path}: {_kind(info.st_mode)} where a lock file belongs; allowed: a regular file")
    with os.fdopen(fd, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clean_leftovers(folder: Path, name: str) -> None:
    """Remove what a killed atomic write of ``name`` left in ``folder`` (``.<name>.<random>`` temp files/folders).
    Call it only while holding the lock that guards ``name``."""
    for leftover in folder.glob(f".{glob.escape(name)}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
