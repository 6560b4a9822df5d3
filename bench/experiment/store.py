"""Where a cell's results live, written atomically so an interrupted run never leaves half a cell."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from bench.core.files import atomic_write_text, file_lock, follow_umask, read_regular_text
from bench.data.loaders import file_digest
from bench.experiment.record import Record, RecordError, read_record

RESULT_FILE = "result.json"
SET_FILE = "synthetic.pt"


PLAN_FILE = ".cells.json"  # the matrix's cells and their settings fingerprints, written before any work
MATRIX_FILE = ".matrix.json"  # the matrix's name, profile and table layout (what the report draws)
ASIDE_DIR = ".aside"  # corrupt or stale cells moved out of the way (never deleted)
LOCK_DIR = ".locks"


class ResultsFolderError(OSError):
    """The results folder cannot be used (not writable, or a path would leave it)."""


def inside(root: Path, path: Path) -> Path:
    """``path`` if it lies under ``root`` (after resolving links and '..'), else ResultsFolderError."""
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        if os.path.islink(path) and Path(os.path.realpath(path.parent)).is_relative_to(os.path.realpath(root)):
            raise ResultsFolderError(
                f"refusing to write {path}: it is a link leading outside the results folder {root}; allowed: a "
                "regular file or none (remove the link)"
            )
        raise ResultsFolderError(f"refusing to write {path}: it is outside the results folder {root}")
    return path


def cell_dir(root: Path, cell_id: str) -> Path:
    return inside(root, root / cell_id)


@dataclass
class RecordCheck:
    """What a cell folder holds: 'missing', 'done', 'corrupt' (unreadable or off the record schema) or 'stale'
    (computed under another plan). The same rule decides this for run, status and report."""

    state: str
    reason: str = ""
    record: Record | None = None


MAX_RECORD_BYTES = 64 * 2**20  # a result.json larger than this is corrupt, not read


_DIGESTS: dict[tuple[int, ...], str] = {}


def set_digest(path: Path) -> str:
    """sha256 of a stored set, hashed once per process while the file is unchanged: a report or run checks each
    record several times, and a TinyImageNet IPC-50 set is half a gigabyte. The key holds the inode change time,
    which any write, rename or copy moves and no user can set, so a swapped file is always hashed again."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path, "sha256")
    return _DIGESTS[key]


def check_record(root: Path, cell_id: str, fingerprint: str | None = None) -> RecordCheck:
    """Read and validate ``<root>/<cell_id>/result.json`` against the record schema; with ``fingerprint``,
    also compare the plan it was computed under."""
    path = root / cell_id / RESULT_FILE
    if not path.is_file() or path.is_symlink():
        return (
            RecordCheck("missing")
            if not path.exists() and not path.is_symlink()
            else RecordCheck("corrupt", f"{path}: not a regular file")
        )
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return RecordCheck("corrupt", f"{path}: {path.stat().st_size} bytes (at most {MAX_RECORD_BYTES})")
        record = read_record(json.loads(path.read_text()), cell_id)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        return RecordCheck(
            "corrupt", f"{path}: {err if isinstance(err, RecordError) else 'unreadable (' + type(err).__name__ + ')'}"
        )
    stored_set, digest = root / cell_id / SET_FILE, record.provenance.get("set_sha256")
    if (
        digest
        and stored_set.exists()
        and (not stored_set.is_file() or stored_set.is_symlink() or set_digest(stored_set) != digest)
    ):
        return RecordCheck("corrupt", f"{stored_set}: not the set its record names (sha256 differs)")
    if fingerprint is not None and record.fingerprint != fingerprint:
        return RecordCheck(
            "stale", f"{path}: computed with other settings (fingerprint {record.fingerprint} != {fingerprint})", record
        )
    return RecordCheck("done", "", record)


def move_aside(root: Path, cell_id: str, why: str, source: Path | None = None) -> Path:
    """Move a corrupt or stale cell folder (or another of the cell's files, ``source``) to ``.aside/``: kept for
    inspection, out of every table, never deleted."""
    aside = own_subfolder(root, ASIDE_DIR)
    target = inside(
        root, aside / f"{cell_id}.{why}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}.{time.monotonic_ns()}"
    )
    src = source if source is not None else root / cell_id
    inside(root, src.parent if src.is_symlink() else src)  # a link is moved itself; what it points to stays
    os.replace(src, target)
    return target


def restore_set_aside_cell(
    root: Path, cell_id: str, fingerprint: str, data_md5: str | None = None, source_set: str | None = None
) -> Path | None:
    """Put back the newest finished cell that a run under other settings set aside as stale, if it was computed
    under ``fingerprint`` (and, given ``data_md5``, from that data; an evaluation cell, only if it evaluated
    ``source_set``, the set its source holds now): a smoke run on the real run's folder then costs
    the real run nothing. Returns where it came from, or None. A candidate that is not a whole record under these
    settings goes back where it was."""
    aside, home = root / ASIDE_DIR, root / cell_id
    if aside.is_symlink() or not aside.is_dir() or home.exists() or home.is_symlink():
        return None
    candidates = []
    for path in aside.glob(f"{glob.escape(cell_id)}.stale.*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):  # never a link: what it points to is not this folder's
            candidates.append((info.st_mtime, path))
    for _, candidate in sorted(candidates, reverse=True):
        try:
            os.replace(candidate, inside(root, home))
        except OSError:  # taken by another run meanwhile
            continue
        check = check_record(root, cell_id, fingerprint)
        used = check.record.provenance.get("dataset_md5") if check.record is not None else None
        has_set = check.record is not None and (  # a distillation cell's set, which its evaluation cells read
            check.record.cell.task == "evaluate"
            or not check.record.provenance.get("set_sha256")
            or (home / SET_FILE).is_file()
        )
        evaluated = check.record.provenance.get("set_sha256") if check.record is not None else None
        same_set = check.record is None or check.record.cell.task != "evaluate" or evaluated == source_set
        if check.state == "done" and (data_md5 is None or used == data_md5) and has_set and same_set:
            return candidate
        os.replace(home, candidate)
    return None


# The folders a run keeps under the results root. Each must be a real folder inside it (a symlink could send
# checkpoints, error files, locks or feature networks elsewhere, and a later clean-up would delete there).
OWN_FOLDERS = (".checkpoints", ".errors", ".feature_nets", LOCK_DIR, ASIDE_DIR, ".submitit")


def own_subfolder(root: Path, name: str, create: bool = True) -> Path:
    """``root/name`` proven to be a real folder inside ``root`` (created if absent); ResultsFolderError otherwise."""
    path = root / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ResultsFolderError(
            f"refusing to use {path}: it is a symlink or not a folder; "
            "allowed: a real folder inside the results folder (remove it)"
        )
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return inside(root, path)


def check_folder(root: Path) -> None:
    """Every folder a run writes under ``root`` is a real folder inside it (one-line ResultsFolderError if not)."""
    if root.is_symlink():
        raise ResultsFolderError(f"refusing to use {root}: the results folder is a symlink; allowed: a real folder")
    for name in OWN_FOLDERS:
        own_subfolder(root, name, create=False)


def write_cell(root: Path, cell_id: str, result: dict[str, Any], synthetic: dict[str, Any] | None) -> dict[str, Any]:
    """Write every file into a temporary folder, then rename it into place in one step; returns the record written.

    The stored set's sha256 goes into the record's provenance, so a table traces to the exact set.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = cell_dir(root, cell_id)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cell_id}.", dir=root))
    try:
        follow_umask(tmp, directory=True)
        if synthetic is not None:
            torch.save(synthetic, tmp / SET_FILE)
            result = {
                **result,
                "provenance": {**result.get("provenance", {}), "set_sha256": file_digest(tmp / SET_FILE, "sha256")},
            }
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=1, default=str))
        if final.exists() or final.is_symlink():  # another run's record, or a corrupt/stale one: kept, never deleted
            move_aside(root, cell_id, "replaced")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def clean_old_temps(root: Path, older_than_s: float = 600.0) -> None:
    """Remove temporary files of killed ``atomic_write_text`` calls on the folder's shared files (tables, plan,
    job list, error logs). Only old ones: a fresh one may belong to a write in progress."""
    cutoff = time.time() - older_than_s
    shared = (
        "table.md",
        "table.tex",
        "table_best.md",
        "table_best.tex",
        "table_max-during.md",
        "table_max-during.tex",
        PLAN_FILE,
        MATRIX_FILE,
        ".jobs.json",
    )
    candidates = [p for name in shared for p in root.glob(f".{glob.escape(name)}.*")]
    candidates += list((root / ".errors").glob(".*.txt.*")) + list(root.glob(".probe.*"))
    for path in candidates:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


def cell_lock(root: Path, cell_id: str, wait: bool = False):
    """The lock one run holds while it computes a cell, so two runs of one results folder never both do."""
    path = own_subfolder(root, LOCK_DIR) / f"{cell_id}.lock"
    if path.is_symlink() or (path.exists() and not path.is_file()):  # never a lock of ours: kept aside, not used
        move_aside(root, cell_id, "lock-not-a-file", path)
    return file_lock(inside(root, path), wait)


def cell_running(root: Path, cell_id: str) -> bool:
    """Whether a run holds the cell's lock now (read-only: a lock file that does not exist is not created)."""
    path = root / LOCK_DIR / f"{cell_id}.lock"
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def is_run_folder(root: Path) -> bool:
    """A folder ``dreambench run`` made: it holds a plan or a matrix file."""
    return (root / PLAN_FILE).is_file() or (root / MATRIX_FILE).is_file()


class FolderBusyError(ResultsFolderError):
    """Another live run uses the results folder with other settings."""


ACTIVE_FILE = ".active.json"  # the live runs of a folder: pid -> {plan digest, process start time}
MAX_PID = 2**22  # Linux's largest pid_max


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where /proc cannot tell: a pid
    that a later process reused has another start time, so a killed run's entry never holds the folder."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_time(pid)
    return now is None or now == started  # where /proc tells, only the very process that wrote the entry counts


@contextlib.contextmanager
def claim_folder(root: Path, fingerprints: dict[str, str]) -> Iterator[None]:
    """Hold the folder for this run. Runs with the same plan share it (they split the cells through the cell
    locks); a run whose plan differs from a live run's is refused with one line, so neither replaces the
    other's plan nor treats the other's records as stale. Entries of runs that ended (or were killed, their pid
    since reused) are dropped."""
    digest = hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()[:16]
    lock = inside(root, own_subfolder(root, LOCK_DIR) / "active.lock")
    me = str(os.getpid())
    with file_lock(lock):
        active = _read_active(root)
        live = {pid: e for pid, e in active.items() if pid != me and _alive(int(pid), e.get("started"))}
        other = next((pid for pid, e in live.items() if e["plan"] != digest), None)
        if other is not None:
            raise FolderBusyError(
                f"another run (pid {other}) is using {root} with other settings; wait for it to "
                f"finish or choose another --results folder (if no such run is alive, remove {root / ACTIVE_FILE})"
            )
        live[me] = {"plan": digest, "started": _start_time(os.getpid())}
        atomic_write_text(root / ACTIVE_FILE, json.dumps(live, sort_keys=True))
    try:
        yield
    finally:
        with file_lock(lock):
            active = _read_active(root)
            active.pop(me, None)
            atomic_write_text(root / ACTIVE_FILE, json.dumps(active, sort_keys=True))


def _read_active(root: Path) -> dict[str, dict[str, Any]]:
    """The entries of ``.active.json`` that can be a run's: a pid of ASCII digits in range, a plan digest (an
    older file's bare digest is read as one); anything else is dropped."""
    try:
        data = json.loads(read_regular_text(root / ACTIVE_FILE, 1 << 20))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for pid, entry in data.items():
        if not (isinstance(pid, str) and pid.isascii() and pid.isdigit() and 0 < int(pid) <= MAX_PID):
            continue
        entry = {"plan": entry} if isinstance(entry, str) else entry
        if isinstance(entry, dict) and isinstance(entry.get("plan"), str):
            started = entry.get("started")
            out[pid] = {"plan": entry["plan"], "started": started if isinstance(started, str) else None}
    return out


def probe_writable(root: Path) -> None:
    """Create the results folder and a file in it now, so an unwritable or full disk stops the run before any work."""
    check_folder(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=root)
        try:
            os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ResultsFolderError(
            f"results folder {root} is not writable ({err.strerror or type(err).__name__})"
        ) from None


def write_plan(root: Path, fingerprints: dict[str, str]) -> None:
    """Record which cells make up the matrix now (and their settings), replacing the previous plan: a cell the
    matrix no longer has is no longer reported, though its folder stays."""
    with file_lock(inside(root, own_subfolder(root, LOCK_DIR) / "plan.lock")):
        atomic_write_text(root / PLAN_FILE, json.dumps(fingerprints, indent=1, sort_keys=True))


def write_matrix_info(root: Path, info: dict[str, str]) -> None:
    """Record which matrix, profile and table layout the folder holds (the report reads the layout here)."""
    atomic_write_text(root / MATRIX_FILE, json.dumps(info, indent=1, sort_keys=True))


_WARNED: set[str] = set()


def warn_on_stderr(line: str) -> None:
    """The default for the ``warn`` arguments below: one ``warning:`` line on stderr, once per process (a report
    reads the folder more than once)."""
    if line not in _WARNED:
        _WARNED.add(line)
        print(f"warning: {line}", file=sys.stderr)


def read_own_json(
    path: Path, limit: int, valid: Callable[[Any], bool], instead: str, warn: Callable[[str], None] = warn_on_stderr
) -> Any:
    """The JSON in one of the folder's own files; None when there is none. One that is there but unreadable or
    malformed is None too, with one warning naming it and what is done instead (never silently)."""
    if not (path.exists() or path.is_symlink()):
        return None
    try:  # a regular file within ``limit`` only: a FIFO or device in its place is refused without blocking
        data = json.loads(read_regular_text(path, limit))
        reason = None if valid(data) else "not what the harness writes there"
    except (OSError, ValueError, RecursionError) as err:
        reason = str(err).split("; allowed")[0] if isinstance(err, OSError) and str(err) else type(err).__name__
    if reason is None:
        return data
    then = (
        "remove it (no run can write the file while it is there)"
        if path.is_dir() and not path.is_symlink()
        else "the next `dreambench run` of the matrix rewrites it"
    )
    warn(f"{path} is unreadable ({reason:.200}); {instead}; {then}")
    return None


def _str_map(data: Any) -> bool:
    return isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())


def read_matrix_info(root: Path, warn: Callable[[str], None] = warn_on_stderr) -> dict[str, str]:
    """What :func:`write_matrix_info` wrote; {} for folders made before it existed, or (with a warning) when it
    is unreadable."""
    instead = "the table layout is taken from the records' matrix name (Table I's if it names none)"
    return read_own_json(root / MATRIX_FILE, 1 << 20, _str_map, instead, warn) or {}


def check_own_files(root: Path) -> None:
    """The run writes its plan and matrix files: a folder (or FIFO, device) in their place stops it before any
    work, in one line (ResultsFolderError); a link there is replaced by the write, never followed."""
    for name in (PLAN_FILE, MATRIX_FILE):
        path = root / name
        if (path.exists() or path.is_symlink()) and not path.is_symlink() and not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise ResultsFolderError(
                f"{path} is {what} where the run writes its own file; allowed: a regular file or none (remove it)"
            )


def read_plan(root: Path, warn: Callable[[str], None] = warn_on_stderr) -> dict[str, str] | None:
    """What :func:`write_plan` wrote; None when there is none, or (with a warning) when it is unreadable (a regular
    file only, at most 64 MiB)."""
    instead = "the cell folders are read instead of the plan"
    return read_own_json(root / PLAN_FILE, 64 << 20, _str_map, instead, warn)


def read_results(root: Path, warn: Callable[[str], None] | None = None) -> list[Record]:
    """The valid result records of the cells in ``root``: the cells its plan lists (else its direct sub-folders).

    Corrupt records and records whose settings differ from the plan are left out with one warning line each;
    nested or stray copies (``X.bak/``, ``old/X/``) are never read, since only planned cell folders are.
    """
    root = Path(root)
    plan = read_plan(root, warn or warn_on_stderr)
    ids = (
        sorted(plan)
        if plan is not None
        else sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    records = []
    for cell_id in ids:
        check = check_record(root, cell_id, plan.get(cell_id) if plan is not None else None)
        if check.state == "done":
            records.append(check.record)
        elif check.state != "missing" and warn is not None:
            warn(f"left out ({check.state}): {check.reason}")
    if plan is not None and warn is not None:
        dropped = sorted(p.parent.name for p in root.glob("*/" + RESULT_FILE) if p.parent.name not in plan)
        if dropped:
            warn(
                f"left out: {len(dropped)} folder(s) with a result that the matrix's current plan does not list "
                f"(cells it no longer has, or copies) ({', '.join(dropped[:3])}"
                f"{', ...' if len(dropped) > 3 else ''})"
            )
    return records
