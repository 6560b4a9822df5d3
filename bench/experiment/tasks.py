"""Run one cell: load data, distil with the method, evaluate on every evaluation architecture."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from bench.core.files import load_tensor_file
from bench.core.host_memory import keeping_freed_memory
from bench.core.version import CODE_VERSION, code_state, machine_label
from bench.data.loaders import (
    DatasetNotFoundError,
    ImageDataset,
    file_digest,
    load_dataset,
)
from bench.experiment.continual import run_continual, training_protocol
from bench.experiment.matrix import Cell
from bench.experiment.record import CellRecord
from bench.experiment.store import SET_FILE, write_cell
from bench.learning.evaluation import (
    Protocol,
    evaluate_set,
    network_factory,
    resolve_protocol,
)
from methods.base import DistilledSet, Method
from methods.components import create_method

_DATA_CACHE: dict[tuple[Any, ...], tuple[ImageDataset, str]] = {}
_DATA_MD5: dict[int, str] = {}
# Engine fields added after records existed, left out of the fingerprint at these values (which compute what
# the records made before the field did), so an opt-in knob does not make every earlier record stale.
OPT_IN_DEFAULTS: dict[str, Any] = {"precision": "float32"}


def load_cell_data(cell: Cell, data_root: str | None) -> tuple[ImageDataset, str]:
    """The cell's dataset, or the profile's fallback dataset when the real one is absent (recorded)."""
    key = (cell.dataset, data_root, cell.max_per_class, cell.data_fallback)
    if key not in _DATA_CACHE:
        try:
            data = load_dataset(cell.dataset, data_root, max_per_class=cell.max_per_class)
        except DatasetNotFoundError:
            if cell.data_fallback is None:
                raise
            data = load_dataset(cell.data_fallback, data_root, max_per_class=cell.max_per_class)
        _DATA_CACHE[key] = (data, data.name)
    return _DATA_CACHE[key]


def data_md5(data: ImageDataset) -> str:
    """md5 of the tensors a cell trained and tested on (after any subsampling), once per dataset object."""
    if id(data) not in _DATA_MD5:
        digest = hashlib.md5()
        for t in (data.train_images, data.train_labels, data.test_images, data.test_labels):
            digest.update(t.contiguous().numpy().tobytes())
        _DATA_MD5[id(data)] = digest.hexdigest()
    return _DATA_MD5[id(data)]


def resolved_settings(cell: Cell) -> dict[str, Any]:
    """Everything that decides a cell's result: the cell, the method's full configuration, the budget, the
    evaluation protocol and the code version. Two runs with equal resolved settings compute the same thing."""
    method = create_method(cell.method, cell.dataset, cell.ipc, cell.engine_overrides())
    config = method.config.with_budget(cell.budget()) if method.config is not None else None
    protocols = {arch: dataclasses.asdict(_protocol_for(dataclasses.replace(cell, eval_archs=(arch,)), method, cell.dataset))
                 for arch in cell.eval_archs}
    resolved = {"cell": {**dataclasses.asdict(cell), "id": cell.id}, "method": method.name, "eval_protocol": method.eval_protocol,
                "config": _fingerprinted(dataclasses.asdict(config)) if config is not None else None,
                "budget": dataclasses.asdict(cell.budget()), "protocols": protocols, "code_version": CODE_VERSION}
    rule = method.selection_rule
    return {**resolved, "selection_rule": rule} if rule is not None else resolved


def _fingerprinted(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in OPT_IN_DEFAULTS or v != OPT_IN_DEFAULTS[k]}


def cell_fingerprint(cell: Cell) -> str:
    """A short digest of :func:`resolved_settings`: records and checkpoints carry it; a mismatch is 'stale'."""
    text = json.dumps(resolved_settings(cell), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(cell: Cell, data: ImageDataset) -> dict[str, Any]:
    """What produced a record: seed, settings fingerprint, code, library versions, device and data."""
    return {"seed": cell.seed, "fingerprint": cell_fingerprint(cell), **code_state(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": machine_label(), "dataset_md5": data_md5(data)}


@dataclass
class RunContext:
    """Where a cell runs: its results folder (evaluate cells read their source set there), data, hooks."""

    root: Path = Path(".")
    data_root: str | None = None
    checkpoint: Any = None
    progress: Callable[[int], None] | None = None


def execute_cell(cell: Cell, ctx: RunContext) -> tuple[dict[str, Any], DistilledSet | None]:
    """Run the cell's task; returns the JSON-able result and the distilled set (if the task keeps one)."""
    return TASKS[cell.task](cell, ctx)


def new_record(cell: Cell, data: ImageDataset, accuracies: dict[str, list[float]], **measured: Any) -> dict[str, Any]:
    """The cell's result record (:class:`bench.experiment.record.CellRecord`) as the JSON object it is stored as."""
    origin = provenance(cell, data)
    return CellRecord(cell={**dataclasses.asdict(cell), "id": cell.id}, fingerprint=origin["fingerprint"],
                      provenance=origin, data_used=data.name, scale=cell.profile, machine=machine_label(),
                      torch=torch.__version__, accuracies=accuracies, **measured).to_json()


def execute_continual(cell: Cell, ctx: RunContext) -> tuple[dict[str, Any], None]:
    """Class-incremental run: a memory distilled per step, accuracy on all seen classes after each step."""
    data, data_used = load_cell_data(cell, ctx.data_root)
    settings = cell.continual
    steps, protocol_name = settings.steps, settings.protocol
    eval_arch = settings.eval_arch or cell.eval_archs[0]
    protocol = training_protocol(protocol_name)
    if cell.evaluation.epochs is not None:
        protocol = dataclasses.replace(protocol, epochs=cell.evaluation.epochs)
    method = create_method(cell.method, data_used, cell.ipc, cell.engine_overrides())
    start = time.perf_counter()
    outcome = run_continual(data, method, cell.ipc, steps, lambda subset: network_factory(cell.arch, subset),
                            network_factory(eval_arch, data), protocol_name, protocol, cell.budget(), cell.seed,
                            order_seed=cell.seed if protocol_name == "dc" else 0)
    result = new_record(cell, data, {eval_arch: [outcome.accuracies[-1]]}, protocol=dataclasses.asdict(protocol),
                        continual_protocol=protocol_name, class_order=outcome.order, step_accuracies=outcome.accuracies,
                        distill_seconds=time.perf_counter() - start)
    return result, None


def execute_distillation(cell: Cell, ctx: RunContext) -> tuple[dict[str, Any], DistilledSet]:
    """Distil, then evaluate the set on every evaluation architecture."""
    data, data_used = load_cell_data(cell, ctx.data_root)
    method = create_method(cell.method, data_used, cell.ipc, cell.engine_overrides())
    protocol = _protocol_for(cell, method, data_used)
    runs = cell.evaluation.runs
    budget = cell.budget()
    hooks: dict[str, Any] = {"cache_dir": ctx.root}   # coresets keep their feature network there
    curve_best: list[float] = []   # best-of-validation of every evaluation during distillation
    if budget.eval_every:
        curve_protocol = dataclasses.replace(protocol, epochs=cell.evaluation.curve_epochs or protocol.epochs)

        def curve_point(s: DistilledSet) -> float:
            x, y = s.decoded()
            outcome = evaluate_set(x, y, data, cell.eval_archs[0], curve_protocol, 1, cell.seed)
            curve_best.append(outcome.best[0])
            return outcome.mean

        hooks["evaluate"] = curve_point
    if ctx.checkpoint is not None:
        hooks["checkpoint"] = ctx.checkpoint
    if ctx.progress is not None:
        hooks["progress"] = ctx.progress
    start = time.perf_counter()
    distilled = method.distill(data, cell.ipc, network_factory(cell.arch, data), budget, cell.seed, **hooks)
    distill_seconds = time.perf_counter() - start - distilled.timings.get("evaluation", 0.0)
    images, labels = distilled.decoded()
    evaluations, best = {}, {}
    eval_start = time.perf_counter()
    for arch in cell.eval_archs:
        outcome = evaluate_set(images, labels, data, arch, protocol, runs, cell.seed)
        evaluations[arch], best[arch] = outcome.accuracies, outcome.best
    during = None
    resumed = distilled.meta.get("resumed_from", 0)
    # DREAM+'s reported kind (docs/provenance.md), kept apart from the headline; not after a resume, whose
    # earlier evaluations' best points are not kept (the maximum would silently cover only part of the run)
    if curve_best and cell.eval_archs and not resumed:
        final = best[cell.eval_archs[0]]
        during = {cell.eval_archs[0]: [max(*curve_best, sum(final) / len(final))]}
    steps = method.inner_loops(budget)
    t = distilled.timings
    loop_seconds = (t.get("clustering", 0.0) + t.get("image_update", 0.0)) / steps if steps else None
    result = new_record(
        cell, data, evaluations, best_accuracies=best, max_during_distillation=during, eval_runs=runs,
        **_protocol_record(cell, protocol),
        seconds_per_inner_loop=loop_seconds,
        clustering_share=(t.get("clustering", 0.0) / steps / loop_seconds) if loop_seconds else 0.0,
        distill_seconds=distill_seconds, eval_seconds=time.perf_counter() - eval_start, timings=distilled.timings,
        resumed_from=resumed, log=distilled.log)
    return result, distilled


def cell_preparation(cell: Cell) -> tuple[Any, ...] | None:
    """The shared work a distillation cell needs first (``Method.preparation``), keyed so that cells needing
    the same work (same data, network and need) share one key; None when it needs none."""
    if cell.task != "distill":
        return None
    method = create_method(cell.method, cell.dataset, cell.ipc, cell.engine_overrides())
    need = method.preparation(cell.budget(), cell.seed)
    return None if need is None else (cell.dataset, cell.data_fallback, cell.max_per_class, cell.arch, *need)


def prepare_cell(cell: Cell, root: Path, data_root: str | None) -> None:
    """Do the shared work ``cell`` needs (e.g. train its feature network into ``root``), ahead of the cell."""
    with keeping_freed_memory():
        data, data_used = load_cell_data(cell, data_root)
        method = create_method(cell.method, data_used, cell.ipc, cell.engine_overrides())
        method.prepare(data, network_factory(cell.arch, data), cell.budget(), cell.seed, root)


def timing_line(result: dict[str, Any]) -> str:
    """Seconds per inner loop (clustering + image update) and the clustering share, as Table VI reports."""
    if not result.get("seconds_per_inner_loop"):
        return f"{result['cell']['id']}: selection {result['distill_seconds']:.1f}s"
    return (f"{result['cell']['id']}: {result['seconds_per_inner_loop']:.3f} s/inner loop "
            f"(clustering {100 * result['clustering_share']:.0f}%), distil {result['distill_seconds']:.1f}s, "
            f"eval {result['eval_seconds']:.1f}s")


def execute_evaluation(cell: Cell, ctx: RunContext) -> tuple[dict[str, Any], None]:
    """Evaluate the set stored by the distillation cell ``cell.source`` on one architecture."""
    set_file = ctx.root / cell.source / SET_FILE
    if not set_file.is_file():
        raise FileNotFoundError(f"{cell.id} depends on {cell.source}, which has no stored set at {set_file}")
    data, data_used = load_cell_data(cell, ctx.data_root)
    state = load_tensor_file(set_file)
    stored = DistilledSet(state["images"], state["labels"], int(state.get("factor", 1)))
    images, labels = stored.decoded()
    method = create_method(cell.method, data_used, cell.ipc, cell.engine_overrides())
    protocol = _protocol_for(cell, method, data_used)
    runs = cell.evaluation.runs
    start = time.perf_counter()
    outcome = evaluate_set(images, labels, data, cell.eval_archs[0], protocol, runs, cell.seed)
    result = new_record(cell, data, {cell.eval_archs[0]: outcome.accuracies}, **_protocol_record(cell, protocol),
                        eval_runs=runs, best_accuracies={cell.eval_archs[0]: outcome.best},
                        eval_seconds=time.perf_counter() - start)
    result["provenance"]["set_sha256"] = file_digest(set_file, "sha256")   # the set it evaluated (reports count sets)
    return result, None


def _protocol_for(cell: Cell, method: Method, data_used: str) -> Protocol:
    """The published protocol of the method's row (bench.learning.provenance), unless the matrix forces one."""
    factor = method.factor
    protocol = resolve_protocol(cell.evaluation.protocol or method.eval_protocol, data_used, factor)
    if cell.evaluation.epochs is not None:
        protocol = dataclasses.replace(protocol, epochs=cell.evaluation.epochs)
    elif protocol.name == "B" and cell.eval_archs[0].startswith("DenseNet") and cell.ipc >= 50 and factor > 1:
        protocol = dataclasses.replace(protocol, epochs=400)   # IDC test.py: DenseNet, ipc >= 50, f > 1
    return protocol


def _protocol_record(cell: Cell, protocol: Any) -> dict[str, Any]:
    """The protocol as run, and whether it is the row's published one or forced by the matrix."""
    epochs_from = "matrix" if cell.evaluation.epochs is not None else "protocol"   # the report labels the former
    return {"protocol": {**dataclasses.asdict(protocol), "epochs_from": epochs_from},
            "protocol_choice": "forced" if cell.evaluation.protocol else "published"}


TASKS: dict[str, Callable[..., tuple[dict[str, Any], DistilledSet | None]]] = {
    "distill": execute_distillation,
    "continual": execute_continual,
    "evaluate": execute_evaluation,
}


def run_and_store(cell: Cell, root: Path, data_root: str | None = None, checkpoint: Any = None,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run a cell and write it atomically under ``root/<cell id>``."""
    with keeping_freed_memory():
        result, distilled = execute_cell(cell, RunContext(root, data_root, checkpoint, progress))
    write_cell(root, cell.id, result, distilled.state() if distilled is not None else None)
    return result
