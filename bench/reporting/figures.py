"""Accuracy-vs-iteration curves from finished cells, the "iterations to reach" measure, and plots."""
from __future__ import annotations

import statistics
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.core.files import load_tensor_file  # noqa: E402

Curve = list[tuple[int, float]]


def cell_curve(result: dict[str, Any]) -> Curve:
    """(iteration, accuracy) points a run logged while distilling."""
    return [(int(row["iteration"]), float(row["accuracy"])) for row in result.get("log", []) if "accuracy" in row]


def mean_curves(results: list[dict[str, Any]]) -> dict[tuple[str, int, str], Curve]:
    """Seed-averaged curve per (dataset, ipc, method), on the iterations every seed logged."""
    grouped: dict[tuple[str, int, str], list[Curve]] = defaultdict(list)
    for r in results:
        curve = cell_curve(r)
        if curve:
            c = r["cell"]
            grouped[(c["dataset"], c["ipc"], c["method"])].append(curve)
    out = {}
    for key, curves in grouped.items():
        common = set.intersection(*(set(i for i, _ in cv) for cv in curves))
        out[key] = [(i, statistics.fmean(dict(cv)[i] for cv in curves)) for i in sorted(common)]
    return out


def iterations_to_reach(curve: Curve, target: float) -> int | None:
    """First logged iteration whose accuracy is at least ``target`` (None if never)."""
    for iteration, acc in curve:
        if acc >= target:
            return iteration
    return None


def plot_curves(curves: dict[tuple[str, int, str], Curve], path: Path, title: str) -> Path:
    """One line per method, a panel per (dataset, ipc)."""
    panels = sorted({(d, i) for d, i, _ in curves})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (dataset, ipc) in zip(axes[0], panels):
        for (d, i, method), curve in sorted(curves.items()):
            if (d, i) == (dataset, ipc):
                xs, ys = zip(*curve)
                ax.plot(xs, ys, marker="o", ms=3, label=method)
        _style(ax, f"{dataset}, IPC {ipc}", "distillation iteration", "test accuracy (%)")
    fig.suptitle(textwrap.fill(title, 90), fontsize=8)
    return _save(fig, path)


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_synthetic_grid(set_file: Path, path: Path, title: str, max_per_class: int = 10) -> Path:
    """Stored synthetic images, one row per class."""
    state = load_tensor_file(set_file)
    images, labels = state["images"].clamp(0, 1), state["labels"]
    classes = sorted(set(labels.tolist()))
    per_class = [images[labels == c][:max_per_class] for c in classes]
    cols = max(len(p) for p in per_class)
    fig, axes = plt.subplots(len(classes), cols, figsize=(cols * 0.9 + 0.4, len(classes) * 0.9 + 0.4), squeeze=False)
    for r, imgs in enumerate(per_class):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(imgs):
                img = imgs[c].permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    fig.suptitle(textwrap.fill(title, 30), fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_steps(steps: dict[str, list[list[float]]], path: Path, title: str) -> Path:
    """Accuracy on all seen classes after each incremental step, one line per method (paper Fig. 11)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method, per_step in sorted(steps.items()):
        means = [statistics.fmean(a) for a in per_step]
        ax.plot(range(1, len(means) + 1), means, marker="o", label=method)
    _style(ax, textwrap.fill(title, 60), "step", "test accuracy on seen classes (%)")
    return _save(fig, path)
