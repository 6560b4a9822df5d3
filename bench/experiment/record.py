"""The one result record a cell writes (``<cell>/result.json``), as a typed dataclass.

Built only through :func:`bench.experiment.tasks.new_record`, written only by ``bench.experiment.store.write_cell`` and read and
validated only by ``bench.experiment.store.check_record`` / ``read_results``. Optional fields that do not apply to a
cell's task are left out of the JSON, so every record holds just what its task measured.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CellRecord:
    """What one cell produced: accuracies per evaluation architecture, timings, and what produced them."""

    cell: dict[str, Any]                 # the cell's fields and id
    fingerprint: str                     # digest of the resolved settings (bench.experiment.tasks.resolved_settings)
    provenance: dict[str, Any]           # seed, code commit, library versions, device, data md5
    data_used: str
    scale: str                           # the matrix profile (mini, cpu, gpu, paper, ...)
    machine: str
    torch: str
    accuracies: dict[str, list[float]]   # eval arch -> last-epoch accuracy of each evaluation run (%)
    distill_seconds: float = 0.0
    eval_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    log: list[dict[str, float]] = field(default_factory=list)
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    # evaluated cells
    protocol: dict[str, Any] | None = None
    protocol_choice: str | None = None   # 'published' or 'forced'
    eval_runs: int | None = None
    best_accuracies: dict[str, list[float]] | None = None
    # DREAM+'s published kind: the maximum over the evaluations during distillation (curve points and the
    # final one) of each evaluation's best-of-validation accuracy; only with eval_every, first eval arch
    max_during_distillation: dict[str, list[float]] | None = None
    # distilled cells
    seconds_per_inner_loop: float | None = None
    clustering_share: float | None = None
    resumed_from: int | None = None
    # continual cells
    continual_protocol: str | None = None
    class_order: list[int] | None = None
    step_accuracies: list[float] | None = None

    _ALWAYS = ("seconds_per_inner_loop",)   # kept even when None: coreset cells state they have no inner loop

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (optional fields that do not apply are left out)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None or k in self._ALWAYS}
