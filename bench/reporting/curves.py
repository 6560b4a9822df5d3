"""Accuracy-vs-iteration curves from finished cells and the "iterations to reach" measure (data, no plots)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from bench.experiment.record import Record

Curve = list[tuple[int, float]]


def cell_curve(record: Record) -> Curve:
    """(iteration, accuracy) points a run logged while distilling."""
    return [(int(row["iteration"]), float(row["accuracy"])) for row in record.log if "accuracy" in row]


def curve_bands(records: list[Record]) -> dict[tuple[str, int, str], list[tuple[int, float, float, float]]]:
    """Per (dataset, ipc, method): (iteration, mean, min, max) over seeds on the iterations every seed logged."""
    grouped: dict[tuple[str, int, str], list[Curve]] = defaultdict(list)
    for r in records:
        curve = cell_curve(r)
        if curve:
            grouped[(r.cell.dataset, r.cell.ipc, r.cell.method)].append(curve)
    return {key: seed_band(curves) for key, curves in grouped.items()}


def seed_band(curves: list[Curve]) -> list[tuple[int, float, float, float]]:
    """(iteration, mean, min, max) over several seeds' curves, on the iterations every one of them logged."""
    common = sorted(set.intersection(*(set(i for i, _ in cv) for cv in curves)))
    return [(i, statistics.fmean(v := [dict(cv)[i] for cv in curves]), min(v), max(v)) for i in common]


def mean_curves(records: list[Record]) -> dict[tuple[str, int, str], Curve]:
    """Seed-averaged curve per (dataset, ipc, method), on the iterations every seed logged."""
    return {key: [(i, mean) for i, mean, _, _ in band] for key, band in curve_bands(records).items()}


def iterations_to_reach(curve: Curve, target: float) -> int | None:
    """First logged iteration whose accuracy is at least ``target`` (None if never)."""
    for iteration, acc in curve:
        if acc >= target:
            return iteration
    return None
