"""Run one planned cell: distil with its method, evaluate on every evaluation network, record what ran.

Each task (``distill``, ``continual``, ``evaluate``) takes a :class:`bench.experiment.plan.CellPlan` and
returns the record; nothing here resolves settings again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench.core.files import load_tensor_file
from bench.core.host_memory import keeping_freed_memory
from bench.core.version import code_state, machine_label
from bench.data.loaders import ImageDataset, file_digest
from bench.experiment.continual import run_continual
from bench.experiment.plan import CellPlan, load_data
from bench.experiment.record import CellRecord, Record, read_record
from bench.experiment.store import SET_FILE, write_cell
from bench.learning.evaluation import Protocol, evaluate_set, network_factory
from methods.base import DistilledSet

_DATA_MD5: dict[int, str] = {}


def plan_data(plan: CellPlan, data_root: str | None) -> ImageDataset:
    """The data the plan resolved (the fallback's, under ``data_fallback``), loaded once per process."""
    return load_data(plan.data_used, data_root, plan.cell.max_per_class)


def data_md5(data: ImageDataset) -> str:
    """md5 of the tensors a cell trained and tested on (after any subsampling), once per dataset object."""
    if id(data) not in _DATA_MD5:
        digest = hashlib.md5()
        for t in (data.train_images, data.train_labels, data.test_images, data.test_labels):
            digest.update(t.contiguous().numpy().tobytes())
        _DATA_MD5[id(data)] = digest.hexdigest()
    return _DATA_MD5[id(data)]


def provenance(plan: CellPlan, data: ImageDataset) -> dict[str, Any]:
    """What produced a record: seed, plan fingerprint, code, library versions, device and data."""
    return {
        "seed": plan.cell.seed,
        "fingerprint": plan.fingerprint,
        **code_state(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": machine_label(),
        "dataset_md5": data_md5(data),
    }


class Progress(typing.Protocol):
    """Where a task reports how far it is: ``phase(name, total, unit)`` starts a phase, ``progress(done)``."""

    def phase(self, name: str, total: int | None, unit: str = "it") -> None: ...

    def __call__(self, done: int) -> None: ...


class NoProgress:
    """Reports nowhere."""

    def phase(self, name: str, total: int | None, unit: str = "it") -> None:
        pass

    def __call__(self, done: int) -> None:
        pass


@dataclass
class RunContext:
    """Where a cell runs: its results folder (evaluate cells read their source set there), data, hooks."""

    root: Path = Path(".")
    data_root: str | None = None
    checkpoint: Any = None
    progress: Progress = field(default_factory=NoProgress)


def new_record(
    plan: CellPlan, data: ImageDataset, accuracies: dict[str, list[float]], **measured: Any
) -> dict[str, Any]:
    """The cell's result record (:class:`bench.experiment.record.CellRecord`) as the JSON object it is stored as."""
    return CellRecord(
        cell={**dataclasses.asdict(plan.cell), "id": plan.id},
        fingerprint=plan.fingerprint,
        plan=plan.to_json(),
        provenance=provenance(plan, data),
        data_used=plan.data_used,
        scale=plan.cell.profile,
        machine=machine_label(),
        torch=torch.__version__,
        accuracies=accuracies,
        **measured,
    ).to_json()


def _protocol_record(plan: CellPlan, protocol: Protocol) -> dict[str, Any]:
    """The protocol as run, and whether it is the row's published one or forced by the matrix."""
    return {
        "protocol": {**dataclasses.asdict(protocol), "epochs_from": plan.epochs_from},
        "protocol_choice": plan.protocol_choice,
    }


def execute_continual(plan: CellPlan, ctx: RunContext) -> tuple[dict[str, Any], None]:
    """Class-incremental run: a memory distilled per step, accuracy on all seen classes after each step."""
    cell, settings = plan.cell, plan.continual
    assert settings is not None
    data = plan_data(plan, ctx.data_root)
    protocol = plan.continual_training
    assert protocol is not None
    eval_arch = settings["eval_arch"]
    ctx.progress.phase("continual (distil and train per step)", None)
    start = time.perf_counter()
    outcome = run_continual(
        data,
        plan.method,
        cell.ipc,
        settings["steps"],
        lambda subset: network_factory(cell.arch, subset),
        network_factory(eval_arch, data),
        settings["protocol"],
        protocol,
        plan.budget,
        cell.seed,
        order_seed=cell.seed if settings["protocol"] == "dc" else 0,
    )
    result = new_record(
        plan,
        data,
        {eval_arch: [outcome.accuracies[-1]]},
        protocol=dataclasses.asdict(protocol),
        continual_protocol=settings["protocol"],
        class_order=outcome.order,
        step_accuracies=outcome.accuracies,
        distill_seconds=time.perf_counter() - start,
    )
    return result, None


def execute_distillation(plan: CellPlan, ctx: RunContext) -> tuple[dict[str, Any], DistilledSet]:
    """Distil, then evaluate the set on every evaluation network."""
    cell = plan.cell
    data = plan_data(plan, ctx.data_root)
    budget = plan.budget
    hooks: dict[str, Any] = {"cache_dir": ctx.root}  # coresets keep their feature network there
    curve_best: list[float] = []  # best-of-validation of every evaluation during distillation
    if budget.eval_every:
        first = plan.protocols[cell.eval_archs[0]]
        curve_protocol = dataclasses.replace(first, epochs=plan.curve_epochs or first.epochs)

        def curve_point(s: DistilledSet) -> float:
            x, y = s.decoded()
            outcome = evaluate_set(x, y, data, cell.eval_archs[0], curve_protocol, 1, cell.seed)
            curve_best.append(outcome.best[0])
            return outcome.mean

        hooks["evaluate"] = curve_point
    if ctx.checkpoint is not None:
        hooks["checkpoint"] = ctx.checkpoint
    hooks["progress"] = ctx.progress
    iterations = plan.config["iterations"] if plan.config else None
    ctx.progress.phase("distil" if plan.config else "select", iterations, "iteration" if plan.config else "it")
    start = time.perf_counter()
    distilled = plan.method.distill(data, cell.ipc, network_factory(cell.arch, data), budget, cell.seed, **hooks)
    distill_seconds = time.perf_counter() - start - distilled.timings.get("evaluation", 0.0)
    images, labels = distilled.decoded()
    evaluations, best = {}, {}
    eval_start = time.perf_counter()
    ctx.progress.phase("evaluate", len(cell.eval_archs) * plan.eval_runs, "network")
    for k, arch in enumerate(cell.eval_archs):
        outcome = evaluate_set(images, labels, data, arch, plan.protocols[arch], plan.eval_runs, cell.seed)
        evaluations[arch], best[arch] = outcome.accuracies, outcome.best
        ctx.progress((k + 1) * plan.eval_runs)
    during = None
    resumed = distilled.meta.get("resumed_from", 0)
    # DREAM+'s reported kind (docs/provenance.md), kept apart from the headline; not after a resume, whose
    # earlier evaluations' best points are not kept (the maximum would silently cover only part of the run)
    if curve_best and cell.eval_archs and not resumed:
        final = best[cell.eval_archs[0]]
        during = {cell.eval_archs[0]: [max(*curve_best, sum(final) / len(final))]}
    steps = plan.inner_loops
    t = distilled.timings
    loop_seconds = (t.get("clustering", 0.0) + t.get("image_update", 0.0)) / steps if steps else None
    protocol = plan.protocols[cell.eval_archs[0]] if cell.eval_archs else None
    result = new_record(
        plan,
        data,
        evaluations,
        best_accuracies=best,
        max_during_distillation=during,
        eval_runs=plan.eval_runs,
        **(_protocol_record(plan, protocol) if protocol is not None else {}),
        seconds_per_inner_loop=loop_seconds,
        clustering_share=(t.get("clustering", 0.0) / steps / loop_seconds) if loop_seconds else 0.0,
        distill_seconds=distill_seconds,
        eval_seconds=time.perf_counter() - eval_start,
        timings=distilled.timings,
        resumed_from=resumed,
        log=distilled.log,
    )
    return result, distilled


def execute_evaluation(plan: CellPlan, ctx: RunContext) -> tuple[dict[str, Any], None]:
    """Evaluate the set stored by the distillation cell ``cell.source`` on one network."""
    cell = plan.cell
    set_file = ctx.root / cell.source / SET_FILE
    if not set_file.is_file():
        raise FileNotFoundError(f"{cell.id} depends on {cell.source}, which has no stored set at {set_file}")
    data = plan_data(plan, ctx.data_root)
    state = load_tensor_file(set_file)
    stored = DistilledSet(state["images"], state["labels"], int(state.get("factor", 1)))
    images, labels = stored.decoded()
    arch = cell.eval_archs[0]
    protocol = plan.protocols[arch]
    ctx.progress.phase("evaluate", plan.eval_runs, "network")
    start = time.perf_counter()
    outcome = evaluate_set(images, labels, data, arch, protocol, plan.eval_runs, cell.seed)
    result = new_record(
        plan,
        data,
        {arch: outcome.accuracies},
        **_protocol_record(plan, protocol),
        eval_runs=plan.eval_runs,
        best_accuracies={arch: outcome.best},
        eval_seconds=time.perf_counter() - start,
    )
    result["provenance"]["set_sha256"] = file_digest(set_file, "sha256")  # the set it evaluated (reports count sets)
    return result, None


TASKS: dict[str, Callable[[CellPlan, RunContext], tuple[dict[str, Any], DistilledSet | None]]] = {
    "distill": execute_distillation,
    "continual": execute_continual,
    "evaluate": execute_evaluation,
}


def cell_preparation(plan: CellPlan) -> tuple[Any, ...] | None:
    """The shared work a distillation cell needs first (``Method.preparation``), keyed so that cells needing
    the same work (same data, network and need) share one key; None when it needs none."""
    if plan.cell.task != "distill":
        return None
    need = plan.method.preparation(plan.budget, plan.cell.seed)
    return None if need is None else (plan.data_used, plan.cell.max_per_class, plan.cell.arch, *need)


def prepare_cell(plan: CellPlan, root: Path, data_root: str | None) -> None:
    """Do the shared work ``plan`` needs (e.g. train its feature network into ``root``), ahead of the cell."""
    with keeping_freed_memory():
        data = plan_data(plan, data_root)
        plan.method.prepare(data, network_factory(plan.cell.arch, data), plan.budget, plan.cell.seed, root)


def timing_line(record: Record) -> str:
    """Seconds per inner loop (clustering + image update) and the clustering share, as Table VI reports."""
    if not record.seconds_per_inner_loop:
        return f"{record.cell.id}: selection {record.distill_seconds:.1f}s"
    return (
        f"{record.cell.id}: {record.seconds_per_inner_loop:.3f} s/inner loop "
        f"(clustering {100 * (record.clustering_share or 0.0):.0f}%), distil {record.distill_seconds:.1f}s, "
        f"eval {record.eval_seconds:.1f}s"
    )


def run_and_store(
    plan: CellPlan, root: Path, data_root: str | None = None, checkpoint: Any = None, progress: Progress | None = None
) -> Record:
    """Run a planned cell and write it atomically under ``root/<cell id>``; returns the record as read back."""
    with keeping_freed_memory():
        result, distilled = TASKS[plan.cell.task](
            plan, RunContext(root, data_root, checkpoint, progress or NoProgress())
        )
    written = write_cell(root, plan.id, result, distilled.state() if distilled is not None else None)
    return read_record(json.loads(json.dumps(written, default=str)), plan.id)  # as a reader will see it
