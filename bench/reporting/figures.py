"""Plots of a results folder: accuracy against distillation iterations, continual steps, stored images.

Every figure is written atomically (a temporary file in the same folder, then one rename), so a full disk or
a failed draw never leaves a half or empty PNG in place of a good one.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench.core.files import follow_umask, load_tensor_file  # noqa: E402

Band = list[tuple[int, float, float, float]]  # (iteration, mean, min, max) over seeds


def plot_curves(
    bands: dict[tuple[str, int, str], Band],
    path: Path,
    title: str,
    paper: dict[tuple[str, int, str], float] | None = None,
) -> Path:
    """One line per method (mean over seeds, band from the lowest to the highest seed), a panel per (dataset,
    ipc), and the paper's value of each method as a dashed line where the paper has one."""
    panels = sorted({(d, i) for d, i, _ in bands})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (dataset, ipc) in zip(axes[0], panels):
        for (d, i, method), band in sorted(bands.items()):
            if (d, i) != (dataset, ipc):
                continue
            xs, means, lows, highs = zip(*band)
            (line,) = ax.plot(xs, means, marker="o", ms=3, label=method)
            if any(lo != hi for lo, hi in zip(lows, highs)):
                ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
            reference = (paper or {}).get((d, i, method))
            if reference is not None:
                ax.axhline(reference, color=line.get_color(), linestyle="--", linewidth=1, label=f"{method} (paper)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _style(ax, f"{dataset}, IPC {ipc}", "distillation iteration", "test accuracy (%)")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_steps(steps: dict[str, list[list[float]]], path: Path, title: str) -> Path:
    """Accuracy on all seen classes after each incremental step, one line per method (paper Fig. 11): mean over
    seeds/orders with a band from the lowest to the highest."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, per_step in sorted(steps.items()):
        xs = list(range(1, len(per_step) + 1))
        (line,) = ax.plot(xs, [statistics.fmean(a) for a in per_step], marker="o", label=method)
        if any(len(a) > 1 for a in per_step):
            ax.fill_between(
                xs,
                [min(a) for a in per_step],
                [max(a) for a in per_step],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _style(ax, title, "step (classes added)", "test accuracy on seen classes (%)")
    return _save(fig, path)


def plot_synthetic_grid(
    set_file: Path, path: Path, title: str, max_per_class: int = 10, class_names: list[str] | None = None
) -> Path:
    """Stored images, one row per class, labelled with the class name (or index)."""
    state = load_tensor_file(set_file)
    images, labels = state["images"].clamp(0, 1), state["labels"]
    classes = sorted(set(labels.tolist()))
    per_class = [images[labels == c][:max_per_class] for c in classes]
    cols = max(len(p) for p in per_class)
    fig, axes = plt.subplots(len(classes), cols, figsize=(cols * 0.9 + 1.4, len(classes) * 0.9 + 0.7), squeeze=False)
    for r, imgs in enumerate(per_class):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(imgs):
                img = imgs[c].permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        name = class_names[classes[r]] if class_names and classes[r] < len(class_names) else str(classes[r])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=90)


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Draw into a temporary file beside ``path`` and rename it into place: a failed layout, draw or write (a full
    disk) leaves neither a partial PNG nor the temporary file, and an existing figure at ``path`` stays as it was.
    The figure is closed in every case; the file gets the user's umask, like every other written file."""
    tmp: Path | None = None
    try:
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, dpi=dpi, format="png")
            fh.flush()
            os.fsync(fh.fileno())
        follow_umask(tmp, directory=False)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path
