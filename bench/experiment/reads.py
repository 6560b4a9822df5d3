"""What a cell reads: the settings each method never reads (by its kind, and by its resolved engine
configuration), left out of its cells so they never make a finished cell stale; refused where they are given for
one method alone; and the checks that a method's name and a matrix's variants stay true to what runs."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Protocol

from bench.experiment.settings import SettingError, engine_overrides, view
from methods.base import Budget
from methods.components import SWITCH_HOLDS, SWITCH_KEYS, create_method, method_kind, resolve, switch_mismatches
from methods.config import unread_fields


class CellView(Protocol):
    """What these checks read of a matrix cell (bench.experiment.matrix.Cell)."""

    @property
    def id(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def data_fallback(self) -> str | None: ...
    @property
    def ipc(self) -> int: ...
    @property
    def arch(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def task(self) -> str: ...
    @property
    def variant(self) -> str: ...
    @property
    def max_per_class(self) -> int | None: ...
    @property
    def settings(self) -> dict[str, Any]: ...


@functools.lru_cache(maxsize=None)
def ignored_by(method: str) -> frozenset[str]:
    """Flat setting keys ``method`` never reads (its base's; a curve's epochs go with ``eval_every``)."""
    spec, _ = resolve(method)
    ignored = spec.ignored_settings()
    return ignored | {"eval_curve_epochs"} if "eval_every" in ignored else ignored


def why_ignored(method: str, key: str) -> str:
    if key in ("feature_epochs", "feature_seed"):
        return (
            "it picks without a trained feature network"
            if method_kind(method) == "coreset"
            else ("feature networks are for the coresets that pick with one")
        )
    return "a coreset selects real images: it has no distillation engine, iterations or accuracy curve"


def read_by(method: str, datasets: tuple[str, str | None], ipc: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a cell of ``method`` carries: those it reads, by its kind and by its resolved configuration
    on its data (so a setting it never reads never makes its finished cells stale)."""
    settings = {k: v for k, v in settings.items() if k not in ignored_by(method)}
    unread = _engine_reads(method, datasets, ipc, _frozen(settings))[0]
    return {k: v for k, v in settings.items() if k not in unread}


def _frozen(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4096)
def _engine_reads(
    method: str, datasets: tuple[str, str | None], ipc: int, frozen: str
) -> tuple[dict[str, str], tuple[tuple[str, str, str], ...]]:
    """For an engine method under these settings: the engine fields it never reads on any of its data (field ->
    why), and where the settings and its name disagree on a switch: (switch, 'undoes' or 'turns on', the name of
    what runs). Coresets: nothing (their rule is ``ignored_by``)."""
    if method_kind(method) == "coreset":
        return {}, ()
    settings = json.loads(frozen)
    unread: dict[str, str] | None = None
    mismatches: list[tuple[str, str, str]] = []
    for dataset in dict.fromkeys(d for d in datasets if d):
        try:
            config = create_method(method, dataset, ipc, engine_overrides(settings)).config
        except (ValueError, KeyError, TypeError) as err:
            why = str(err.args[0] if err.args else type(err).__name__).splitlines()[0]
            raise SettingError(f"{method} on {dataset} at IPC {ipc}: {why}") from None
        assert config is not None
        config = config.with_budget(view(Budget, settings))
        fields = unread_fields(config)
        unread = fields if unread is None else {k: v for k, v in unread.items() if k in fields}
        found, runs = switch_mismatches(method, dataset, ipc, config)
        mismatches += [(part, verb, runs) for part, verb in found if (part, verb, runs) not in mismatches]
    return unread or {}, tuple(mismatches)


def check_entries_read(entries: list[tuple[str, str, dict[str, Any], dict[str, str]]], cells: list[CellView]) -> None:
    """A setting given for one method (or one of its IPCs) that none of its cells reads is refused, naming why."""
    for where, key, settings, names in entries:
        method, _, ipc_part = key.partition("/ipc")
        mine = [c for c in cells if c.method == method and (not ipc_part or c.ipc == int(ipc_part))]
        for setting in settings:
            if mine and not any(setting in c.settings for c in mine):
                cell = mine[0]
                unread = _engine_reads(method, (cell.dataset, cell.data_fallback), cell.ipc, _frozen(cell.settings))[0]
                why = unread.get(setting, "not with these settings")
                raise SettingError(
                    f"{where}.{names.get(setting, setting)}: {method} never reads it ({why}); allowed: settings "
                    f"{method} reads"
                )


def check_switches_kept(cells: list[CellView]) -> None:
    """One method, one name: settings that undo a switch of the name (DC+init with init: noise), or turn on one it
    does not name (DC with init: cluster), are refused, naming the setting and the name of what would run."""
    for cell in cells:
        mismatches = _engine_reads(cell.method, (cell.dataset, cell.data_fallback), cell.ipc, _frozen(cell.settings))[1]
        if mismatches:
            part, verb, runs = mismatches[0]
            key = SWITCH_KEYS[part]
            value = json.dumps(cell.settings[key]) if key in cell.settings else "(its method's value)"
            raise SettingError(
                f"{cell.method} in cell {cell.id}: engine.{key} = {value} {verb} +{part} ({SWITCH_HOLDS[part][0]}), so "
                f"its rows would carry a name that is not true; allowed: the name of what runs ({runs}), or leave "
                f"engine.{key} to the name"
            )


def check_variants_differ(cells: list[CellView], variants: list[str]) -> list[str]:
    """Variants that give every cell the same settings are refused (their rows would repeat one measurement under
    different names); variants one method cannot tell apart get a note naming that method."""
    if len(variants) < 2:
        return []
    signature: dict[str, dict[tuple[Any, ...], str]] = {v: {} for v in variants}
    for c in cells:
        position = (c.dataset, c.ipc, c.method, c.arch, c.seed, c.task)
        signature[c.variant][position] = _frozen({**c.settings, "max_per_class": c.max_per_class})

    def twins(of: Callable[[tuple[Any, ...]], bool]) -> list[list[str]]:
        """Groups of variants equal wherever both have a cell (an exclude may leave one of them fewer cells)."""
        groups: list[list[str]] = []
        for v in variants:
            for group in groups:
                w = group[0]
                common = [p for p in signature[v] if p in signature[w] and of(p)]
                if common and all(signature[v][p] == signature[w][p] for p in common):
                    group.append(v)
                    break
            else:
                groups.append([v])
        return [g for g in groups if len(g) > 1]

    same = twins(lambda p: True)
    if same:
        raise SettingError(
            f"variants {', '.join(same[0])} give every cell the same settings (no cell reads what sets them apart, "
            "or it is one value written two ways); allowed: variants that differ in a setting some method reads"
        )
    notes = []
    for method in dict.fromkeys(c.method for c in cells):
        for group in twins(lambda p, m=method: p[2] == m):
            notes.append(
                f"note: variants {', '.join(group)} give {method} the same settings (it never reads what sets them "
                f"apart): its rows repeat one measurement; leave them out with exclude: [{{method: {method}, variant: "
                f"{group[-1]}}}]"
            )
    return notes
