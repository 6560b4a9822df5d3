"""A cell resolved once: the one place that decides what a cell will run.

:func:`plan_cells` turns matrix cells into :class:`CellPlan` objects: the data actually used (the profile's
fallback when the real dataset is absent), the method with its full configuration, the budget, the evaluation
protocol and epochs of every evaluation network, the feature-network recipe of a coreset, the stored-image
factor, and a fingerprint computed from all of that. Everything that runs, records, fingerprints, estimates
or reports a cell takes its plan, so a record always describes the configuration that ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.core.version import CODE_VERSION
from bench.data.info import dataset_info
from bench.data.loaders import DatasetNotFoundError, ImageDataset, load_dataset
from bench.experiment.continual import training_protocol
from bench.experiment.matrix import Cell
from bench.learning.evaluation import Protocol, resolve_protocol
from methods.base import Method
from methods.components import create_method, expand_same_as, method_kind
from methods.config import Budget

# Engine fields added after records existed, left out of the fingerprint at these values (which compute what
# the records made before the field did), so an opt-in knob does not make every earlier record stale.
OPT_IN_DEFAULTS: dict[str, Any] = {"precision": "float32"}

_DATA: dict[tuple[Any, ...], ImageDataset] = {}


def load_data(name: str, data_root: str | None, max_per_class: int | None) -> ImageDataset:
    """A dataset as cells use it (first ``max_per_class`` training images per class), loaded once per process."""
    key = (name, data_root, max_per_class)
    if key not in _DATA:
        _DATA[key] = load_dataset(name, data_root, max_per_class=max_per_class)
    return _DATA[key]


def find_data(cell: Cell, data_root: str | None) -> ImageDataset:
    """The cell's dataset, or its profile's fallback when the real one is absent (DatasetNotFoundError if neither)."""
    try:
        return load_data(cell.dataset, data_root, cell.max_per_class)
    except DatasetNotFoundError:
        if cell.data_fallback is None:
            raise
        return load_data(cell.data_fallback, data_root, cell.max_per_class)


@dataclass
class CellPlan:
    """What one cell runs, resolved once. ``to_json`` is what its record stores and its fingerprint digests."""

    cell: Cell
    data_used: str
    method_kind: str  # engine | coreset | composite
    method_parts: tuple[str, ...]  # the base and DREAM switches, equivalences expanded: DREAM -> IDC, rm, init
    config: dict[str, Any] | None  # engine methods: the whole configuration, budget applied
    selection_rule: dict[str, Any] | None  # coresets: the rule choices that decide the set
    factor: int  # stored-image multi-formation factor
    budget: Budget
    inner_loops: int  # image-update steps (0 for coresets)
    protocols: dict[str, Protocol]  # evaluation network -> protocol as run (epochs included)
    protocol_choice: str  # 'published' (the row's paper) or 'forced' (the matrix's eval_protocol)
    epochs_from: str  # 'protocol' or 'matrix' (eval_epochs)
    eval_runs: int
    curve_epochs: int | None  # epochs of each evaluation during distillation (eval_every)
    continual: dict[str, Any] | None  # continual cells: steps, protocol, evaluation network
    continual_training: Protocol | None  # continual cells: how each step's network is trained
    feature_network: dict[str, Any] | None  # coresets that select with a network: seed, epochs, recipe
    code_version: str = CODE_VERSION
    fingerprint: str = ""
    _method: Method | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.cell.id

    @property
    def task(self) -> str:
        return self.cell.task

    @property
    def method(self) -> Method:
        """The built method (rebuilt after unpickling in a worker process: only the plan's data travels)."""
        if self._method is None:
            self._method = _build_method(self.cell, self.data_used)
        return self._method

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_method": None}

    def to_json(self) -> dict[str, Any]:
        """The resolved plan as plain JSON data (what the record stores)."""
        cell = self.cell
        return {
            "cell": {**dataclasses.asdict(cell), "id": cell.id},
            "data_used": self.data_used,
            "method": {
                "name": cell.method,
                "kind": self.method_kind,
                "parts": list(self.method_parts),
                "config": self.config,
                "selection_rule": self.selection_rule,
                "factor": self.factor,
                "feature_network": self.feature_network,
            },
            "budget": dataclasses.asdict(self.budget),
            "inner_loops": self.inner_loops,
            "evaluation": {
                "protocols": {arch: dataclasses.asdict(p) for arch, p in self.protocols.items()},
                "protocol_choice": self.protocol_choice,
                "epochs_from": self.epochs_from,
                "runs": self.eval_runs,
                "curve_epochs": self.curve_epochs,
            },
            "continual": None
            if self.continual is None
            else {**self.continual, "training": dataclasses.asdict(self.continual_training)},
            "code_version": self.code_version,
        }

    def cost(self) -> tuple[float, str]:
        """The cell's matching work as its method states it (``Method.cost``); evaluation-only cells have none."""
        if self.cell.task == "evaluate":
            return 0.0, f"evaluate {self.cell.source} on {self.cell.eval_archs[0]}"
        return self.method.cost(self.budget, self.cell.ipc, dataset_info(self.data_used).classes)


def _build_method(cell: Cell, data_used: str) -> Method:
    return create_method(cell.method, data_used, cell.ipc, cell.engine_overrides())


def _fingerprinted(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in OPT_IN_DEFAULTS or v != OPT_IN_DEFAULTS[k]}


def fingerprint_of(plan_json: dict[str, Any]) -> str:
    """A short digest of a resolved plan: records and checkpoints carry it; a mismatch is 'stale'."""
    method = plan_json["method"]
    digestible = {
        **plan_json,
        "method": {**method, "config": _fingerprinted(method["config"]) if method["config"] else None},
    }
    text = json.dumps(digestible, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluation_protocol(cell: Cell, method: Method, data_used: str, arch: str) -> Protocol:
    """The published protocol of the method's row (bench.learning.provenance), unless the matrix forces one;
    the matrix's eval_epochs replace the protocol's; IDC's test.py trains DenseNet longer at ipc >= 50, f > 1."""
    factor = method.factor
    evaluation = cell.evaluation
    protocol = resolve_protocol(evaluation.protocol or method.eval_protocol, data_used, factor)
    if evaluation.epochs is not None:
        protocol = dataclasses.replace(protocol, epochs=evaluation.epochs)
    elif protocol.name == "B" and arch.startswith("DenseNet") and cell.ipc >= 50 and factor > 1:
        protocol = dataclasses.replace(protocol, epochs=400)
    return protocol


def _continual(cell: Cell) -> tuple[dict[str, Any] | None, Protocol | None]:
    if cell.task != "continual":
        return None, None
    settings = cell.continual
    protocol = training_protocol(settings.protocol)
    if cell.evaluation.epochs is not None:
        protocol = dataclasses.replace(protocol, epochs=cell.evaluation.epochs)
    return {
        "steps": settings.steps,
        "protocol": settings.protocol,
        "eval_arch": settings.eval_arch or cell.eval_archs[0],
    }, protocol


def plan_cell(cell: Cell, data_used: str) -> CellPlan:
    """Resolve ``cell`` against the data it will use: the one place a cell's method is built for running."""
    method = _build_method(cell, data_used)
    budget = cell.budget()
    config = dataclasses.asdict(method.config.with_budget(budget)) if method.config is not None else None
    chosen = method.feature_network(budget, cell.seed)
    feature = None if chosen is None else {"seed": chosen[0], "epochs": chosen[1], "recipe": method.feature_recipe}
    base, switches = expand_same_as(cell.method)
    continual, continual_training = _continual(cell)
    plan = CellPlan(
        cell=cell,
        data_used=data_used,
        method_kind=method_kind(cell.method),
        method_parts=(base, *switches),
        config=config,
        selection_rule=method.selection_rule,
        factor=method.factor,
        budget=budget,
        inner_loops=method.inner_loops(budget),
        protocols={arch: evaluation_protocol(cell, method, data_used, arch) for arch in cell.eval_archs},
        protocol_choice="forced" if cell.evaluation.protocol else "published",
        epochs_from="matrix" if cell.evaluation.epochs is not None else "protocol",
        eval_runs=cell.evaluation.runs,
        curve_epochs=cell.evaluation.curve_epochs,
        continual=continual,
        continual_training=continual_training,
        feature_network=feature,
        _method=method,
    )
    plan.fingerprint = fingerprint_of(plan.to_json())
    return plan


class MissingDataError(DatasetNotFoundError):
    """One or more datasets a matrix needs are absent; the message names every one and where to put them."""


def plan_cells(cells: list[Cell], data_root: str | None) -> list[CellPlan]:
    """Every cell's plan, after loading its data once. All missing datasets are reported together."""
    missing: dict[str, str] = {}
    found: dict[str, ImageDataset] = {}
    for cell in cells:
        try:
            found[cell.id] = find_data(cell, data_root)
        except DatasetNotFoundError as err:
            missing.setdefault(cell.dataset, str(err).splitlines()[0] if str(err) else cell.dataset)
    if missing:
        if len(missing) == 1:
            raise MissingDataError(next(iter(missing.values())))
        raise MissingDataError(f"{len(missing)} datasets are missing: " + " | ".join(missing.values()))
    return [plan_cell(cell, found[cell.id].name) for cell in cells]
