"""Where a cell's results live, written atomically so an interrupted run never leaves half a cell."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULT_FILE = "result.json"
SET_FILE = "synthetic.pt"


# numpy scalars (DC's result files store accuracies as numpy floats) rebuild data only, never run code
_NUMPY_CORE = getattr(np, "_core", None) or np.core
_DATA_ONLY_GLOBALS = [np.dtype, _NUMPY_CORE.multiarray.scalar, *{type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32")}]


class UnsafeFileError(ValueError):
    """A tensor file that is unreadable, or that needs more than tensors and plain containers to load."""


def load_tensor_file(path: Path | str) -> Any:
    """``torch.load`` with ``weights_only=True``: a file that would run code (a pickled object) is refused."""
    try:
        with torch.serialization.safe_globals(_DATA_ONLY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeFileError(f"{path}: refused to load: it holds more than tensors ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise UnsafeFileError(f"{path}: not a readable tensor file ({type(err).__name__})") from None


def cell_dir(root: Path, cell_id: str) -> Path:
    return root / cell_id


def is_done(root: Path, cell_id: str) -> bool:
    return (cell_dir(root, cell_id) / RESULT_FILE).is_file()


def write_cell(root: Path, cell_id: str, result: dict[str, Any], synthetic: dict[str, Any] | None) -> Path:
    """Write every file into a temporary folder, then rename it into place in one step."""
    root.mkdir(parents=True, exist_ok=True)
    final = cell_dir(root, cell_id)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cell_id}.", dir=root))
    try:
        if synthetic is not None:
            torch.save(synthetic, tmp / SET_FILE)
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=1, default=str))
        if final.exists():          # a stale folder without result.json (never a finished cell)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every finished cell's result.json below ``root`` (any depth)."""
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob(RESULT_FILE)) if not p.parent.name.startswith(".")]
