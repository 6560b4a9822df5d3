"""The one result record a cell writes (``<cell>/result.json``): written as :class:`CellRecord`, read back as
:class:`Record`, the typed reader every consumer (run, status, report, continual) uses.

A record states what ran: its ``schema_version``, the code version and the whole resolved plan
(:mod:`bench.experiment.plan`: method configuration, budget, evaluation protocol and epochs per network, data
used, feature-network recipe, factor). Records of an older schema are upgraded by :func:`upgrade_record`, the
one place that knows old layouts; a record that fails the schema (a field missing, of the wrong type, out of
its bounds or too large) is "corrupt" everywhere with the same rule.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.core.version import CODE_VERSION, SCHEMA_VERSION
from bench.experiment.matrix import Cell
from bench.learning.evaluation import PROTOCOLS

MAX_TEXT = 4096  # characters of any string field (a huge field must not make the report crawl)
MAX_ITEMS = 100_000  # entries of any list or mapping field


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """What a cell measured beyond its headline accuracies; the fields a written and a read record share."""

    distill_seconds: float = 0.0
    eval_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    log: list[dict[str, float]] = field(default_factory=list)
    # evaluated cells
    protocol: dict[str, Any] | None = None
    protocol_choice: str | None = None  # 'published' or 'forced'
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


@dataclass(frozen=True, kw_only=True)
class CellRecord(Measurements):
    """What one cell produced, as it is written: accuracies per evaluation network, timings, the plan."""

    cell: dict[str, Any]  # the cell's fields and id
    fingerprint: str  # digest of the resolved plan (bench.experiment.plan)
    plan: dict[str, Any]  # the resolved plan (CellPlan.to_json)
    provenance: dict[str, Any]  # seed, code commit, library versions, device, data md5
    data_used: str
    scale: str  # the matrix profile (mini, cpu, gpu, paper, ...)
    machine: str
    torch: str
    accuracies: dict[str, list[float]]  # eval arch -> last-epoch accuracy of each evaluation run (%)
    schema_version: int = SCHEMA_VERSION
    code_version: str = CODE_VERSION
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    _ALWAYS = ("seconds_per_inner_loop",)  # kept even when None: coreset cells state they have no inner loop

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (optional fields that do not apply are left out)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None or k in self._ALWAYS}


class RecordError(ValueError):
    """A record that does not fit the schema; the message names the field and what is wrong."""


# --- the schema: every field, its type and bounds -----------------------------------------------------

Check = Callable[[Any], str | None]


def _text(v: Any) -> str | None:
    if not isinstance(v, str):
        return "is not a string"
    return f"is a string of {len(v)} characters (at most {MAX_TEXT})" if len(v) > MAX_TEXT else None


def _number(low: float = -math.inf, high: float = math.inf) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
            return f"holds {v!r}, not a finite number in [{low}, {high}]"
        return None

    return check


def _integer(low: int = 0, high: int = 2**63 - 1) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            return f"holds {v!r}, not an integer in [{low}, {high}]"
        return None

    return check


def _sized(v: Any, kind: type) -> str | None:
    if not isinstance(v, kind):
        return f"is not a {'mapping' if kind is dict else 'list'}"
    return f"has {len(v)} entries (at most {MAX_ITEMS})" if len(v) > MAX_ITEMS else None


def _list_of(item: Check) -> Check:
    def check(v: Any) -> str | None:
        problem = _sized(v, list)
        return problem or next((f"[{i}] {p}" for i, x in enumerate(v) if (p := item(x))), None)

    return check


def _mapping(value: Check | None = None) -> Check:
    def check(v: Any) -> str | None:
        problem = _sized(v, dict)
        if problem:
            return problem
        for key, x in v.items():
            if (p := _text(key)) or (value is not None and (p := value(x))):
                return f"[{key!r:.40}] {p}"
        return _json_size(v)

    return check


def _json_size(v: Any, budget: int = 1_000_000) -> str | None:
    """Nested free-form data (plan, provenance, timings) bounded in total size and string length."""
    stack, seen = [v], 0
    while stack:
        x = stack.pop()
        seen += 1
        if seen > budget:
            return f"holds more than {budget} values"
        if isinstance(x, str) and len(x) > MAX_TEXT:
            return f"holds a string of {len(x)} characters (at most {MAX_TEXT})"
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return None


_ACCURACY = _list_of(_number(0.0, 100.0))


def _accuracies(v: Any) -> str | None:
    problem = _mapping(_ACCURACY)(v)
    if problem is None and any(not accs for accs in v.values()):
        return "holds an empty list of accuracies"
    return problem


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


_CELL: dict[str, Check] = {
    "id": _text,
    "matrix": _text,
    "profile": _text,
    "dataset": _text,
    "ipc": _integer(1),
    "method": _text,
    "arch": _text,
    "seed": _integer(0),
    "eval_archs": _list_of(_text),
    "settings": _mapping(),
    "data_fallback": _optional(_text),
    "max_per_class": _optional(_integer(1)),
    "variant": _text,
    "task": _text,
    "source": _text,
}
_FIELDS: dict[str, tuple[bool, Check]] = {  # name -> (required, check)
    "schema_version": (True, _integer(1, SCHEMA_VERSION)),
    "code_version": (True, _text),
    "fingerprint": (True, _text),
    "plan": (False, _optional(_mapping())),
    "provenance": (True, _mapping()),
    "data_used": (True, _text),
    "scale": (True, _text),
    "machine": (True, _text),
    "torch": (True, _text),
    "accuracies": (True, _accuracies),
    "distill_seconds": (False, _number(0.0)),
    "eval_seconds": (False, _number(0.0)),
    "timings": (False, _mapping(_number(0.0))),
    "log": (False, _list_of(_mapping())),
    "finished": (False, _text),
    "protocol": (False, _mapping()),
    "protocol_choice": (False, _text),
    "eval_runs": (False, _integer(1)),
    "best_accuracies": (False, _accuracies),
    "max_during_distillation": (False, _accuracies),
    "seconds_per_inner_loop": (False, _optional(_number(0.0))),
    "clustering_share": (False, _number(0.0, 1.0)),
    "resumed_from": (False, _integer(0)),
    "continual_protocol": (False, _text),
    "class_order": (False, _list_of(_integer(0))),
    "step_accuracies": (False, _list_of(_number(0.0, 100.0))),
}


def upgrade_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A record of any earlier schema in today's layout: the one place that knows old layouts.

    Schema 1 (no ``schema_version``) kept no plan: it is upgraded with ``plan: None`` (readers say "not
    recorded" instead of assuming a default), ``code_version`` from its provenance when there, and its
    protocol's ``epochs_from`` inferred the way reports of that time did (epochs other than the protocol's
    own came from the matrix)."""
    if "schema_version" in raw:
        return raw
    out = {**raw, "schema_version": 1, "code_version": str(raw.get("code_version", "0.2.0")), "plan": None}
    protocol = raw.get("protocol")
    if isinstance(protocol, dict) and "epochs_from" not in protocol:
        name, epochs = protocol.get("name"), protocol.get("epochs")
        own = PROTOCOLS.get(name).epochs if isinstance(name, str) and name in PROTOCOLS else epochs
        out["protocol"] = {**protocol, "epochs_from": "matrix" if epochs != own else "protocol"}
    return out


@dataclass(frozen=True, kw_only=True)
class Record(Measurements):
    """A validated result record, typed. ``plan`` is None only for records upgraded from schema 1."""

    schema_version: int
    code_version: str
    cell: Cell
    fingerprint: str
    plan: dict[str, Any] | None
    provenance: dict[str, Any]
    data_used: str
    scale: str
    machine: str
    torch: str
    accuracies: dict[str, list[float]]
    finished: str = ""

    @property
    def set_id(self) -> str:
        """The stored set's digest (cells holding the same images share it), else the cell id."""
        return str(self.provenance.get("set_sha256") or self.cell.id)

    @property
    def method_plan(self) -> dict[str, Any] | None:
        return self.plan["method"] if self.plan else None

    @property
    def config(self) -> dict[str, Any] | None:
        """The engine configuration that ran (None for coresets and for schema-1 records)."""
        return self.method_plan.get("config") if self.method_plan else None

    @property
    def feature_network(self) -> dict[str, Any] | None:
        """Seed, epochs and recipe of the network a coreset picked with (None: none, or not recorded)."""
        return self.method_plan.get("feature_network") if self.method_plan else None

    @property
    def method_parts(self) -> tuple[str, ...] | None:
        """(base, switch, ...) with equivalences expanded (DREAM -> IDC, rm, init); None when not recorded."""
        return tuple(self.method_plan["parts"]) if self.method_plan else None

    def accuracies_of(self, kind: str) -> dict[str, list[float]]:
        """'last' (the headline), 'best' or 'max-during' accuracies per evaluation network ({} when absent)."""
        chosen = {"last": self.accuracies, "best": self.best_accuracies, "max-during": self.max_during_distillation}
        return chosen[kind] or {}


def read_record(raw: Any, cell_id: str) -> Record:
    """The typed record of ``raw`` (a parsed result.json) for the folder ``cell_id``; RecordError names the
    first problem: schema, types, bounds, sizes, or a cell block that names another folder."""
    if not isinstance(raw, dict):
        raise RecordError("not a JSON object")
    cell = raw.get("cell")
    if not isinstance(cell, dict) or cell.get("id") != cell_id:
        named = cell.get("id") if isinstance(cell, dict) else None
        raise RecordError(f"its cell block names {str(named)[:80]!r}, not its folder {cell_id!r}")
    raw = upgrade_record(raw)
    for name, check in _CELL.items():
        if name not in cell:
            raise RecordError(f"cell.{name} is missing")
        if (problem := check(cell[name])) is not None:
            raise RecordError(f"cell.{name} {problem}")
    for name, (required, check) in _FIELDS.items():
        if name not in raw:
            if required:
                raise RecordError(f"{name} is missing")
            continue
        if (problem := check(raw[name])) is not None:
            raise RecordError(f"{name} {problem}")
    if not raw["accuracies"] and cell["eval_archs"]:
        raise RecordError("accuracies missing or empty")
    for name in ("accuracies", "best_accuracies", "max_during_distillation"):
        extra = set(raw.get(name) or {}) - set(cell["eval_archs"])
        if extra:
            raise RecordError(f"{name} names {sorted(extra)[0]!r:.60}, not one of the cell's eval_archs")
    known = {f.name for f in dataclasses.fields(Record)}
    values = {k: v for k, v in raw.items() if k in known and k != "cell"}
    grid_point = Cell(**{**{k: cell[k] for k in _CELL if k != "id"}, "eval_archs": tuple(cell["eval_archs"])})
    if grid_point.id != cell_id:
        raise RecordError(f"its cell fields make the id {grid_point.id!r}, not its folder {cell_id!r}")
    values["cell"] = grid_point
    return Record(**values)
