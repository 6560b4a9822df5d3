"""A YAML matrix -> validated cells with stable ids.

A matrix names the grid (datasets x ipc x methods x archs x seeds) and ``profiles`` (e.g. ``mini`` and
``paper``) that set budgets and method settings; a profile's ``methods`` mapping takes ``<method>`` or
``<method>/ipc<N>`` keys (the latter applied last, for that IPC only). Every mistake is reported before any work as one
:class:`MatrixError` line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.files import RefusedFileError, read_regular_text
from bench.core.registry import suggestion
from bench.core.safe_yaml import MAX_BYTES as MAX_YAML_BYTES
from bench.core.safe_yaml import YamlError, load_yaml_text
from bench.data.info import dataset_info
from bench.data.loaders import LOADERS, list_datasets
from bench.experiment.reads import (
    check_entries_read,
    check_switches_kept,
    check_variants_differ,
    ignored_by,
    read_by,
    why_ignored,
)
from bench.experiment.settings import (
    BUDGET_KEYS,
    CONTINUAL_KEYS,
    ENGINE_KEYS,
    EVAL_KEYS,
    SETTING_KEYS,
    ContinualSettings,
    EvalSettings,
    Launcher,
    SettingError,
    check_settings,
    engine_overrides,
    view,
)
from bench.learning.evaluation import protocol_names
from bench.learning.networks import (
    UnknownNetworkError,
    UnusableNetworkError,
    create_network,
    list_networks,
    probe_network,
    timm_name_problem,
)
from methods.base import Budget, UnknownMethodError
from methods.components import check_method_name
from methods.representation import usable_factors


class MatrixError(ValueError):
    """A malformed matrix; the message is one line meant for the user."""


GRID_KEYS = {"datasets": str, "ipc": int, "methods": str, "archs": str, "seeds": int}
GRID_FIELDS = {"dataset", "ipc", "method", "arch", "seed"}  # Cell attributes that 'exclude' may match
TOP_KEYS = {
    "name",
    "description",
    "layout",
    "profile",
    "profiles",
    "overrides",
    "eval_archs",
    "launcher",
    "variants",
    "exclude",
    "task",
    "separate_evaluation",
    *GRID_KEYS,
}
TASKS = ("distill", "continual")  # 'evaluate' cells are derived, never named in a matrix
PROFILE_KEYS = {"description", "defaults", "methods", "data_fallback", "max_per_class", "grid", "exclude"}
EVAL_PROTOCOLS = sorted(protocol_names())
MAX_IPC = 100_000
MAX_CELLS = 100_000  # cells one matrix may expand to (DREAMBENCH_MAX_CELLS or --max-cells raise it)


def cell_cap(given: int | None) -> int:
    """The cap on cells: ``--max-cells``, else ``DREAMBENCH_MAX_CELLS``, else MAX_CELLS; a bad value is one line."""
    text = str(given) if given is not None else os.environ.get("DREAMBENCH_MAX_CELLS", "").strip()
    if not text:
        return MAX_CELLS
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        where = "--max-cells" if given is not None else "DREAMBENCH_MAX_CELLS"
        raise MatrixError(f"{where} = {text!r}; allowed: an integer >= 1")
    return int(text)


@dataclass(frozen=True)
class Cell:
    """One (dataset, ipc, method, arch, seed) run under a profile, with its resolved settings."""

    matrix: str
    profile: str
    dataset: str
    ipc: int
    method: str
    arch: str
    seed: int
    eval_archs: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    data_fallback: str | None = None
    max_per_class: int | None = None
    variant: str = ""
    task: str = "distill"
    source: str = ""  # evaluate cells: the id of the distillation cell whose set they evaluate

    @property
    def id(self) -> str:
        suffix = f"_{self.variant}" if self.variant else ""
        base = safe_id(f"{self.dataset}_ipc{self.ipc}_{self.method}{suffix}_{self.arch}_s{self.seed}")
        return f"{base}@{safe_id(self.eval_archs[0])}" if self.task == "evaluate" else base

    def budget(self) -> Budget:
        """How much work the cell may do (the preset's values where the matrix sets none)."""
        return view(Budget, self.settings)

    @property
    def evaluation(self) -> EvalSettings:
        return view(EvalSettings, self.settings)

    @property
    def continual(self) -> ContinualSettings:
        return view(ContinualSettings, self.settings)

    def engine_overrides(self) -> dict[str, Any]:
        return engine_overrides(self.settings)


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "-", text)


@dataclass
class Matrix:
    """A parsed matrix: its cells under the chosen profile, the launcher, the table layout, and one-line notes
    (deprecated forms it used) for the command to print."""

    name: str
    profile: str
    cells: list[Cell]
    launcher: Launcher
    raw: dict[str, Any]
    layout: str = "table1"  # the report's table layout (bench.reporting.layouts.LAYOUTS), checked by bench.cli.run
    notes: list[str] = field(default_factory=list)


def _fail(msg: str) -> MatrixError:
    return MatrixError(msg)


def _check_list(raw: dict[str, Any], key: str, kind: type, where: str = "") -> list[Any]:
    """One grid list, checked; ``where`` names the profile grid it comes from (``profiles.p.grid.``), if any."""
    if key not in raw:
        raise _fail(f"missing field {key!r}: a matrix needs {sorted(GRID_KEYS)}")
    value = raw[key]
    if not isinstance(value, list):
        value = [value]
    named = f"{where}{key}" if where else repr(key)
    if not value:
        raise _fail(f"{named} is empty: the grid needs at least one value")
    if len(set(map(str, value))) < len(value):
        raise _fail(f"{named} lists a value twice ({value!r:.80}); allowed: distinct values")
    for v in value:
        if not isinstance(v, kind) or isinstance(v, bool):
            raise _fail(f"{key!r} has {v!r} of type {type(v).__name__}; allowed: {kind.__name__} values")
    return value


# The typed sections a settings mapping is written in: section -> {name inside the section: flat setting key}.
SECTIONS: dict[str, dict[str, str]] = {
    "budget": {key: key for key in BUDGET_KEYS},
    "evaluation": {name: key for key, name in EVAL_KEYS.items()},
    "engine": {key: key for key in sorted(ENGINE_KEYS - set(BUDGET_KEYS))},
    "continual": {name: key for key, name in CONTINUAL_KEYS.items()},
}


LAUNCHER_ONLY = ("workers", "executor")


def flatten_sections(where: str, settings: Any, notes: list[str] | None = None) -> Any:
    """``{budget: {iterations: 4}, evaluation: {epochs: 30}}`` -> ``{iterations: 4, eval_epochs: 30}``. Flat keys
    are still accepted (a deprecation note is added to ``notes``); a key in the wrong section, or given twice,
    is a MatrixError."""
    if not isinstance(settings, dict):
        return settings
    flat: dict[str, Any] = {}
    loose = [k for k in settings if k not in SECTIONS]
    for section, names in SECTIONS.items():
        body = settings.get(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise _fail(f"{where}.{section} must be a mapping of settings, got {type(body).__name__}")
        for name, value in body.items():
            if name not in names:
                home = next((s for s, n in SECTIONS.items() if name in n), None)
                hint = f" (it belongs under {home}:)" if home else suggestion(str(name), list(names))
                raise _fail(f"{where}.{section} has unknown setting {name!r}{hint}; allowed: {sorted(names)}")
            flat[names[name]] = value
    for key in loose:
        home = next((sec for sec, names in SECTIONS.items() if key in names and names[key] != key), None)
        if home is not None and key not in SETTING_KEYS:  # `runs` for evaluation.runs, written without its section
            raise _fail(f"{where} has unknown setting {key!r}; allowed: {home}.{key} (it belongs under {home}:)")
        if key in LAUNCHER_ONLY:
            raise _fail(
                f"{where} has {key!r}, a launcher setting; allowed: the matrix's launcher: section, or --{key} on the "
                "command line"
            )
        if key in flat:
            raise _fail(f"{where} sets {key!r} twice (flat and in its section); allowed: once")
        flat[key] = settings[key]
    if loose and notes is not None:
        notes.append(
            f"note: {where} uses flat setting keys ({', '.join(map(str, loose[:4]))}"
            f"{', ...' if len(loose) > 4 else ''}), which are deprecated; group them under "
            "budget:, evaluation:, engine: or continual: (docs/matrices.md)"
        )
    return flat


def written_names(settings: Any) -> dict[str, str]:
    """How each flat key of a sectioned settings mapping was written (``eval_runs`` -> ``evaluation.runs``)."""
    if not isinstance(settings, dict):
        return {}
    return {
        names[name]: f"{section}.{name}"
        for section, names in SECTIONS.items()
        if isinstance(settings.get(section), dict)
        for name in settings[section]
        if name in names
    }


def _check_settings(where: str, settings: Any, notes: list[str] | None = None) -> dict[str, Any]:
    try:
        flat = flatten_sections(where, settings, notes)
        return check_settings(where, flat, EVAL_PROTOCOLS, written_names(settings))
    except SettingError as err:
        raise _fail(str(err)) from None


def method_entries(
    where: str, source: dict[Any, Any], methods: list[str], notes: list[str]
) -> list[tuple[str, str, Any]]:
    """A profile's ``methods:`` entries as (key, written, settings): key = ``<method>`` or ``<method>/ipc<N>``
    internally, written = how the matrix spells it (``DC.per_ipc.10``), so messages name it as written.
    Per-IPC settings are written ``DC: {budget: {...}, per_ipc: {10: {budget: {...}}}}``; the older key form
    ``DC/ipc10`` is still accepted with a deprecation note."""
    out: list[tuple[str, str, Any]] = []
    given: dict[str, str] = {}  # internal key -> how it was written, so one IPC's settings are given once

    def add(internal: str, written: str, settings: Any) -> None:
        if internal in given:
            raise _fail(f"{where}: {given[internal]} and {written} both set {internal}; allowed: one of them")
        given[internal] = written
        out.append((internal, written, settings))

    whose = "this profile's grid" if where.startswith("profiles.") else "the matrix or any profile"
    for key, settings in source.items():
        method, sep, ipc_part = str(key).partition("/ipc")
        if method not in methods or (sep and not ipc_part.isdigit()):
            raise _fail(
                f"{where} names {key!r}, not a method of {whose}{suggestion(str(key), methods)}; allowed: {methods}"
            )
        if sep:
            notes.append(
                f"note: {where}.{key}: '<method>/ipc<N>' keys are deprecated; write "
                f"{method}: {{per_ipc: {{{ipc_part}: ...}}}}"
            )
        if isinstance(settings, dict) and "per_ipc" in settings:
            if sep:
                raise _fail(f"{where}.{key}.per_ipc: a per-IPC entry cannot nest another; allowed: under '{method}'")
            settings = dict(settings)
            per_ipc = settings.pop("per_ipc")
            if not isinstance(per_ipc, dict) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in per_ipc
            ):
                raise _fail(
                    f"{where}.{key}.per_ipc must map IPC values (integers >= 1) to settings, got {per_ipc!r:.80}"
                )
            for ipc, body in per_ipc.items():
                add(f"{method}/ipc{ipc}", f"{key}.per_ipc.{ipc}", body)
        add(str(key), str(key), settings)
    return out


def _check_pool_size(where: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _fail(f"{where} = {value!r}; allowed: an integer >= 1 (real training images kept per class)")
    return value


def _check_arch(arch: str, key: str) -> None:
    if arch.startswith("timm:"):
        problem = timm_name_problem(arch[len("timm:") :])
        if problem is not None:
            raise _fail(f"{key} has {arch!r}: {problem[0]}; allowed: {problem[1]}")
        return
    try:
        if arch not in list_networks():
            create_network(arch, 3, 10, 32)
    except UnknownNetworkError:
        raise _fail(f"{key} has unknown architecture {arch!r}; allowed: {list_networks()} or timm:<model>") from None


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def check_name(value: Any, what: str) -> str:
    """Names that become folder names or job names: a safe alphabet, no path separators, no leading dot."""
    text = str(value)
    if not SAFE_NAME.fullmatch(text) or ".." in text:
        raise _fail(
            f"{what} = {text!r} is not a safe name; allowed: 1-64 of A-Z a-z 0-9 _ . + -, "
            "starting with a letter or digit, without '..'"
        )
    return text


def parse_matrix(
    raw: Any, name: str, profile: str | None = None, extra: dict[str, Any] | None = None, max_cells: int | None = None
) -> Matrix:
    """Validate a loaded YAML document and expand it into cells. ``extra`` settings (``--set key=value``) apply
    to every cell last, checked like the matrix's own."""
    if not isinstance(raw, dict):
        raise _fail(f"matrix {name!r} must be a YAML mapping with keys {sorted(TOP_KEYS)}")
    for key in raw:
        if key not in TOP_KEYS:
            raise _fail(f"unknown key {key!r}{suggestion(str(key), sorted(TOP_KEYS))}; allowed: {sorted(TOP_KEYS)}")
    named = "name" in raw and raw["name"] is not None
    matrix_name = check_name(
        raw["name"] if named else name, "name" if named else "name (taken from the file name; set name: to choose one)"
    )
    if "name" in raw and not isinstance(raw["name"], str):
        raise _fail(f"name = {raw['name']!r}; allowed: a string name, or leave the key out to use the file's name")
    profiles = raw.get("profiles") or {"default": {}}
    if not isinstance(profiles, dict):
        raise _fail(f"'profiles' must map profile names to settings, got {type(profiles).__name__}")
    odd = next((p for p in profiles if not isinstance(p, str)), None)
    if odd is not None:
        raise _fail(
            f"'profiles' has a profile named {odd!r} ({type(odd).__name__}); allowed: names as strings, e.g. '{odd}'"
        )
    if profile is not None and not profile.strip():
        raise _fail("-p ''; allowed: a profile name, or leave -p out for the matrix's own profile")
    chosen = check_name(profile or raw.get("profile") or next(iter(profiles)), "profile")
    if chosen not in profiles:
        raise _fail(
            f"unknown profile {chosen!r}{suggestion(chosen, [str(p) for p in profiles])}; allowed: {sorted(profiles)}"
        )
    prof = profiles[chosen] or {}
    if not isinstance(prof, dict):
        raise _fail(f"profile {chosen!r} must be a mapping")
    for key in prof:
        if key not in PROFILE_KEYS:
            raise _fail(
                f"profiles.{chosen} has unknown key {key!r}{suggestion(str(key), sorted(PROFILE_KEYS))}; "
                f"allowed: {sorted(PROFILE_KEYS)}"
            )
    grid_override = prof.get("grid") or {}
    if not isinstance(grid_override, dict) or not set(grid_override) <= set(GRID_KEYS):
        raise _fail(f"profiles.{chosen}.grid may only set {sorted(GRID_KEYS)}, got {grid_override!r}")
    grid = {
        key: _check_list(
            {**raw, **grid_override}, key, kind, f"profiles.{chosen}.grid." if key in grid_override else ""
        )
        for key, kind in GRID_KEYS.items()
    }
    allowed_datasets = list_datasets()
    for d in grid["datasets"]:
        if d not in allowed_datasets:
            raise _fail(f"'datasets': {LOADERS.unknown_message(d)}")
    for ipc in grid["ipc"]:
        if not 1 <= ipc <= MAX_IPC:
            raise _fail(f"'ipc' has {ipc}; allowed: integers from 1 to {MAX_IPC}")
    for seed in grid["seeds"]:
        if not 0 <= seed < 2**31:
            raise _fail(f"'seeds' has {seed}; allowed: integers from 0 to {2**31 - 1}")
    for m in grid["methods"]:
        try:
            check_method_name(m)
        except UnknownMethodError as err:
            raise _fail(f"'methods': {err}") from None
    eval_archs = raw.get("eval_archs", grid["archs"])
    eval_archs = eval_archs if isinstance(eval_archs, list) else [eval_archs]
    if not eval_archs or not all(isinstance(a, str) and a for a in eval_archs):
        raise _fail(f"'eval_archs' = {eval_archs!r:.80}; allowed: a non-empty list of architecture names")
    if len(set(eval_archs)) < len(eval_archs):
        raise _fail(f"'eval_archs' lists a network twice ({eval_archs!r:.80}); allowed: distinct names")
    for a in grid["archs"]:
        _check_arch(a, "'archs'")
    for a in eval_archs:
        _check_arch(a, "'eval_archs'")

    notes: list[str] = []
    defaults = _check_settings(f"profiles.{chosen}.defaults", prof.get("defaults"), notes)
    command_line = _check_settings("--set", extra or {})
    per_method: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []  # (as written, key, settings, their names)
    # real images kept per class: the profile's, or one method's (a cheaper pool for one row of a CPU profile)
    pool_size: dict[str, int | None] = {
        "": _check_pool_size(f"profiles.{chosen}.max_per_class", prof.get("max_per_class"))
    }
    other_grids = [p["grid"] for p in profiles.values() if isinstance(p, dict) and isinstance(p.get("grid"), dict)]
    declared = {  # every value the matrix's grid or any profile's grid names
        key: [*_listed(raw.get(key)), *(v for g in other_grids for v in _listed(g.get(key)))] for key in GRID_KEYS
    }
    # the matrix's own overrides may name what any profile grids (an entry for another profile's method or IPC
    # applies there); a profile's entries, only its own grid's
    for source, where, known in (
        (raw.get("overrides") or {}, "overrides", declared),
        (prof.get("methods") or {}, f"profiles.{chosen}.methods", grid),
    ):
        if not isinstance(source, dict):
            raise _fail(f"{where} must map method names to settings")
        methods_known = list(dict.fromkeys(m for m in known["methods"] if isinstance(m, str)))
        for key, written, settings in method_entries(where, source, methods_known, notes):
            method, _, ipc_part = key.partition("/ipc")
            if ipc_part and int(ipc_part) not in known["ipc"]:
                raise _fail(f"{where}.{written} names IPC {ipc_part}, which is not in 'ipc'; allowed: {known['ipc']}")
            if method not in grid["methods"] or (ipc_part and int(ipc_part) not in grid["ipc"]):
                continue  # another profile's
            if isinstance(settings, dict) and "max_per_class" in settings:
                settings = dict(settings)
                pool_size[key] = _check_pool_size(f"{where}.{written}.max_per_class", settings.pop("max_per_class"))
            checked = _check_settings(f"{where}.{written}", settings, notes)
            unused = [k for k in checked if k in ignored_by(method)]
            if unused:
                shown = written_names(settings).get(unused[0], unused[0])
                raise _fail(
                    f"{where}.{written}.{shown}: {method} never reads it ({why_ignored(method, unused[0])}); "
                    f"allowed: settings {method} uses"
                )
            per_method.setdefault(key, {}).update(checked)
            entries.append((f"{where}.{written}", key, checked, written_names(settings)))
    fallback = prof.get("data_fallback")
    if fallback is not None and fallback not in allowed_datasets:
        raise _fail(f"profiles.{chosen}.data_fallback = {fallback!r}; allowed: {allowed_datasets}")

    task = raw.get("task", "distill")
    if task not in TASKS:
        raise _fail(f"task = {task!r}; allowed: {list(TASKS)}")
    variants = raw.get("variants") or {"": {}}
    if not isinstance(variants, dict):
        raise _fail(f"'variants' must map variant names to settings, got {type(variants).__name__}")
    unnamed = [k for k in variants if k is None or isinstance(k, bool) or not str(k).strip()]
    if "variants" in raw and unnamed:
        raise _fail(
            f"'variants' has a variant named {unnamed[0]!r}; allowed: non-empty names, each a distinct row of the table"
        )
    if len({str(k) for k in variants}) < len(variants):
        raise _fail(
            f"'variants' names one variant twice ({list(variants)!r:.80}, e.g. 1 and '1'); allowed: distinct names"
        )
    variants = {
        (check_name(str(k), "variant") if "variants" in raw else ""): _check_settings(f"variants.{k}", v, notes)
        for k, v in variants.items()
    }
    exclude = [*(raw.get("exclude") or []), *(prof.get("exclude") or [])]
    if not isinstance(exclude, list) or not all(
        isinstance(e, dict) and set(e) <= {*GRID_FIELDS, "variant"} for e in exclude
    ):
        raise _fail(
            f"'exclude' must be a list of mappings over {sorted({*GRID_FIELDS, 'variant'})} "
            "(a value may be a list: any of them matches)"
        )
    _check_exclude(raw.get("exclude") or [], declared, list(variants), "the matrix or any profile")
    _check_exclude(prof.get("exclude") or [], grid, list(variants), f"profile {chosen!r}")
    size = math.prod(len(grid[k]) for k in GRID_KEYS) * len(variants)
    limit = cell_cap(max_cells)
    if size > limit:
        raise _fail(
            f"the matrix expands to {size} cells before 'exclude'; allowed: at most {limit} "
            f"(raise it with run --max-cells or DREAMBENCH_MAX_CELLS)"
        )
    try:  # a cell's settings are what its resolved configuration reads, so building one resolves it
        cells = [
            Cell(
                matrix_name,
                chosen,
                d,
                ipc,
                m,
                a,
                s,
                tuple(eval_archs),
                read_by(
                    m,
                    (d, fallback),
                    ipc,
                    {**defaults, **per_method.get(m, {}), **per_method.get(f"{m}/ipc{ipc}", {}), **vs, **command_line},
                ),
                fallback,
                pool_size.get(f"{m}/ipc{ipc}", pool_size.get(m, pool_size[""])),
                v,
                task,
            )
            for d, ipc, m, a, s in itertools.product(*(grid[k] for k in GRID_KEYS))
            for v, vs in variants.items()
        ]
    except SettingError as err:
        raise _fail(str(err)) from None
    cells = [
        c
        for c in cells
        if not any(
            all(dataclasses.asdict(c)[k] in (val if isinstance(val, list) else [val]) for k, val in e.items())
            for e in exclude
        )
    ]
    if not cells:
        raise _fail("'exclude' removes every cell: the grid is empty")
    read = {k for c in cells for k in c.settings}
    for source, given in (("--set", command_line), (f"profiles.{chosen}.defaults", defaults)):
        nowhere = sorted(k for k in given if k not in read)
        if nowhere:
            notes.append(
                f"note: {source} sets {', '.join(nowhere)}, which no cell of this matrix reads "
                f"({', '.join(grid['methods'])}); it changes nothing"
            )
    try:
        check_entries_read(entries, cells)
        check_switches_kept(cells)
        notes += check_variants_differ(cells, list(variants))
    except SettingError as err:
        raise _fail(str(err)) from None
    _check_cell_settings(cells)
    _check_timm_input(cells)
    separate = raw.get("separate_evaluation", False)
    if not isinstance(separate, bool):
        raise _fail(f"separate_evaluation = {separate!r}; allowed: true or false")
    if separate and task != "distill":
        raise _fail(f"separate_evaluation: true with task: {task}; allowed: only with task: distill")
    if separate:
        cells = split_evaluation(cells)
    try:
        launcher = Launcher.parse(raw.get("launcher"))
    except SettingError as err:
        raise _fail(str(err)) from None
    layout = raw.get("layout", "continual" if task == "continual" else "table1")
    if not isinstance(layout, str):
        raise _fail(f"'layout' must be a layout name, got {layout!r}")
    if (layout == "continual") != (task == "continual"):
        raise _fail(
            f"layout: {layout} with task: {task}; allowed: layout continual exactly for task: continual (its "
            "records hold accuracies per step, the others' per set)"
        )
    return Matrix(matrix_name, chosen, cells, launcher, raw, layout, list(dict.fromkeys(notes)))


GRID_OF_FIELD = {"dataset": "datasets", "ipc": "ipc", "method": "methods", "arch": "archs", "seed": "seeds"}


def _listed(values: Any) -> list[Any]:
    return values if isinstance(values, list) else [] if values is None else [values]


def _check_exclude(exclude: list[dict[str, Any]], grid: dict[str, list[Any]], variants: list[str], whose: str) -> None:
    """Every value an exclude entry names must be in the grid (a typo would otherwise exclude nothing, silently)."""
    for i, entry in enumerate(exclude):
        for key, value in entry.items():
            allowed = variants if key == "variant" else grid[GRID_OF_FIELD[key]]
            if value == []:
                raise _fail(
                    f"exclude entry {i} ({entry!r:.80}) gives {key} an empty list, which matches nothing; "
                    "allowed: a value or a non-empty list"
                )
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bool) or v not in allowed:  # true == 1 and false == 0 would match an IPC or seed
                    raise _fail(
                        f"exclude entry {i} ({entry!r:.80}) names {key} {v!r}, which is not in the grid of {whose}, "
                        f"so it excludes nothing; allowed: {sorted(set(allowed), key=str)}"
                    )


# what a continual cell never reads: it trains one network per step under continual.protocol, so no other
# protocol, no repeated runs and no curve
IGNORED_BY_CONTINUAL = ("eval_runs", "eval_protocol", "eval_curve_epochs", "eval_every")
_CELL_CHECKED = frozenset(CONTINUAL_KEYS) | set(IGNORED_BY_CONTINUAL) | {"factor"}


def _check_cell_settings(cells: list[Cell]) -> None:
    """The settings that depend on a cell's dataset or need a registry: continual steps and evaluation network.
    Checked once per distinct combination of what the checks read (a grid repeats them for every seed and IPC)."""
    seen: set[tuple[Any, ...]] = set()
    for cell in cells:
        given = frozenset(k for k, v in cell.settings.items() if v is not None) & _CELL_CHECKED
        steps, arch = cell.settings.get("cl_steps"), cell.settings.get("cl_eval_arch")
        key = (cell.task, cell.dataset, cell.data_fallback, given, steps, arch, cell.settings.get("factor"))
        if key in seen:
            continue
        seen.add(key)
        continual = sorted(f"continual.{CONTINUAL_KEYS[k]}" for k in given & set(CONTINUAL_KEYS))
        if continual and cell.task != "continual":
            raise _fail(f"{', '.join(continual)} set for a '{cell.task}' matrix; allowed: only with task: continual")
        ignored = [k for k in IGNORED_BY_CONTINUAL if k in given] if cell.task == "continual" else []
        if ignored:
            names = {**{k: f"evaluation.{n}" for k, n in EVAL_KEYS.items()}, "eval_every": "budget.eval_every"}
            raise _fail(
                f"{', '.join(names[k] for k in ignored)} set for a 'continual' matrix, which never uses it; allowed: "
                "continual.protocol and evaluation.epochs for how each step's network is trained"
            )
        if "eval_curve_epochs" in given and "eval_every" not in given and cell.task == "distill":
            raise _fail("evaluation.curve_epochs is set without budget.eval_every, so no curve is drawn; allowed: both")
        if arch is not None:
            _check_arch(arch, "continual.eval_arch")
        factor = cell.settings.get("factor")
        for dataset in dict.fromkeys(d for d in (cell.dataset, cell.data_fallback) if d):
            size = dataset_info(dataset).image_size
            allowed = usable_factors(size)  # each stored image splits into factor x factor pieces, none all padding
            if factor is not None and factor not in allowed:
                raise _fail(
                    f"engine.factor = {factor} for {dataset}'s {size} x {size} images leaves "
                    f"patches of padding only; allowed: {', '.join(map(str, allowed))}"
                )
        if cell.task == "continual":
            for dataset in dict.fromkeys(d for d in (cell.dataset, cell.data_fallback) if d):  # the data it may use
                classes = dataset_info(dataset).classes
                if classes % (steps or ContinualSettings().steps):
                    raise _fail(
                        f"continual.steps = {steps or ContinualSettings().steps} cannot split {dataset}'s {classes} "
                        f"classes into equal steps; allowed: a divisor of {classes}"
                    )


def _check_timm_input(cells: list[Cell]) -> None:
    """A timm evaluation network must take the cell's images: probed once per (network, data), so a model made
    for other input sizes is refused before any work rather than after distilling."""
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        for arch in cell.eval_archs:
            for dataset in (d for d in (cell.dataset, cell.data_fallback) if d):
                if not arch.startswith("timm:") or (arch, dataset) in seen:
                    continue
                seen.add((arch, dataset))
                info = dataset_info(dataset)
                try:
                    probe_network(arch, info.channels, info.classes, info.image_size)
                except (UnusableNetworkError, UnknownNetworkError) as err:
                    raise _fail(f"'eval_archs' on {dataset}: {err.args[0]}") from None


def split_evaluation(cells: list[Cell]) -> list[Cell]:
    """Distil once, evaluate many times: every distillation cell stores its set and evaluates nothing;
    one 'evaluate' cell per evaluation architecture depends on it. Distillation cells come first."""
    distill = [dataclasses.replace(c, eval_archs=()) for c in cells]
    evaluate = [
        dataclasses.replace(c, task="evaluate", eval_archs=(arch,), source=d.id)
        for c, d in zip(cells, distill)
        for arch in c.eval_archs
    ]
    return distill + evaluate


def load_matrix(
    path: str | Path, profile: str | None = None, extra: dict[str, Any] | None = None, max_cells: int | None = None
) -> Matrix:
    """Read and validate a matrix file: a regular file of at most 1 MiB of UTF-8 YAML, read with
    ``bench.core.safe_yaml`` (duplicate keys, alias bombs and deep nesting are refused in one line)."""
    path = Path(path)
    try:
        text = read_regular_text(path, MAX_YAML_BYTES)
    except FileNotFoundError:
        raise _fail(f"matrix file {str(path)!r} does not exist") from None
    except RefusedFileError as err:
        raise _fail(f"matrix file {err}") from None
    except UnicodeDecodeError:
        raise _fail(f"{path}: not a text (UTF-8) file; a matrix is YAML") from None
    except OSError as err:
        raise _fail(f"matrix file {str(path)!r} cannot be read ({err.strerror or type(err).__name__})") from None
    try:
        raw = load_yaml_text(text, str(path))
    except YamlError as err:
        raise _fail(str(err)) from None
    return parse_matrix(raw, path.stem, profile, extra, max_cells)
