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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from bench.data import list_datasets
from bench.evaluate import protocol_names
from bench.networks import UnknownNetworkError, create_network, list_networks
from methods.base import Budget, UnknownMethodError
from methods.components import check_method_name
from methods.engine import EngineConfig


class MatrixError(ValueError):
    """A malformed matrix; the message is one line meant for the user."""


GRID_KEYS = {"datasets": str, "ipc": int, "methods": str, "archs": str, "seeds": int}
GRID_FIELDS = {"dataset", "ipc", "method", "arch", "seed"}   # Cell attributes that 'exclude' may match
TOP_KEYS = {"name", "description", "layout", "profile", "profiles", "overrides", "eval_archs", "launcher", "variants", "exclude",
            "task", "separate_evaluation", *GRID_KEYS}
TASKS = ("distill", "continual")   # 'evaluate' cells are derived, never named in a matrix
PROFILE_KEYS = {"description", "defaults", "methods", "data_fallback", "max_per_class", "grid", "exclude"}
EVAL_KEYS = {"eval_epochs": int, "eval_runs": int, "eval_protocol": str, "eval_every": int, "eval_curve_epochs": int,
             "cl_steps": int, "cl_protocol": str, "cl_eval_arch": str}
BUDGET_KEYS = {f.name: int for f in dataclasses.fields(Budget)}
ENGINE_KEYS = {f.name for f in dataclasses.fields(EngineConfig)}
LAUNCHER_KEYS = {
    "executor", "partition", "gpus_per_task", "cpus_per_task", "mem_gb", "timeout_min", "array_parallelism",
    "account", "qos", "additional_parameters", "setup", "checkpoint_every",
}
SETTING_KEYS = sorted({*EVAL_KEYS, *BUDGET_KEYS, *ENGINE_KEYS})
EVAL_PROTOCOLS = sorted(protocol_names())


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
    source: str = ""          # evaluate cells: the id of the distillation cell whose set they evaluate

    @property
    def id(self) -> str:
        suffix = f"_{self.variant}" if self.variant else ""
        base = safe_id(f"{self.dataset}_ipc{self.ipc}_{self.method}{suffix}_{self.arch}_s{self.seed}")
        return f"{base}@{safe_id(self.eval_archs[0])}" if self.task == "evaluate" else base

    def budget(self) -> Budget:
        return Budget(**{k: self.settings[k] for k in BUDGET_KEYS if k in self.settings})

    def engine_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k in ENGINE_KEYS}


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "-", text)


@dataclass
class Matrix:
    name: str
    profile: str
    cells: list[Cell]
    launcher: dict[str, Any]
    raw: dict[str, Any]
    layout: str = "table1"   # the report's table layout (bench.layouts.LAYOUTS), checked by bench.run


def _fail(msg: str) -> MatrixError:
    return MatrixError(msg)


def _check_list(raw: dict[str, Any], key: str, kind: type) -> list[Any]:
    if key not in raw:
        raise _fail(f"missing field {key!r}: a matrix needs {sorted(GRID_KEYS)}")
    value = raw[key]
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise _fail(f"{key!r} is empty: the grid needs at least one value")
    for v in value:
        if not isinstance(v, kind) or isinstance(v, bool):
            raise _fail(f"{key!r} has {v!r} of type {type(v).__name__}; allowed: {kind.__name__} values")
    return value


def _check_settings(where: str, settings: Any, method: str | None = None) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise _fail(f"{where} must be a mapping of settings, got {type(settings).__name__}")
    for key, value in settings.items():
        if key not in SETTING_KEYS:
            raise _fail(f"{where} has unknown setting {key!r}; allowed: {SETTING_KEYS}")
        check = RANGES.get(key)
        if check is not None and value is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not check[0](value):
                raise _fail(f"{where}.{key} = {value!r}; allowed: {check[1]}")
        if key == "eval_protocol" and value not in EVAL_PROTOCOLS:
            raise _fail(f"{where}.eval_protocol = {value!r}; allowed: {EVAL_PROTOCOLS}")
        expected = EVAL_KEYS.get(key) or BUDGET_KEYS.get(key)
        if expected is not None and value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise _fail(f"{where}.{key} = {value!r} must be {expected.__name__}")
        if key in ENGINE_KEYS and key != "objective":
            default = getattr(EngineConfig(), key)
            if default is not None and value is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)
            ):
                raise _fail(f"{where}.{key} = {value!r} must be {type(default).__name__}")
    return dict(settings)


def _check_arch(arch: str, key: str) -> None:
    if arch.startswith("timm:"):
        import timm

        if not timm.is_model(arch[len("timm:"):]):
            raise _fail(f"{key} has unknown timm model {arch!r}; allowed: timm:<a name from timm.list_models()>")
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
        raise _fail(f"{what} = {text!r} is not a safe name; allowed: 1-64 of A-Z a-z 0-9 _ . + -, "
                    "starting with a letter or digit, without '..'")
    return text


# Ranges of numeric settings; a value outside fails the matrix before any work.
def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _at_least(low: int) -> Callable[[float], bool]:
    return lambda v: v >= low


RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{k: (_positive, "a finite number > 0") for k in ("lr_img", "net_lr")},
    **{k: (_at_least(1), "an integer >= 1") for k in (
        "iterations", "steps_per_network", "batch_real", "eval_runs", "eval_epochs", "eval_every", "eval_curve_epochs",
        "feature_epochs", "interval", "samples_per_cluster", "cl_steps", "net_batch", "factor", "batch_syn_max")},
    **{k: (_at_least(0), "a number >= 0") for k in ("feature_seed", "warmup_epochs", "net_update_epochs",
                                                     "net_update_samples", "momentum_img", "net_momentum",
                                                     "net_weight_decay")},
    "cutmix_p": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
}


def parse_matrix(raw: Any, name: str, profile: str | None = None) -> Matrix:
    """Validate a loaded YAML document and expand it into cells."""
    if not isinstance(raw, dict):
        raise _fail(f"matrix {name!r} must be a YAML mapping with keys {sorted(TOP_KEYS)}")
    for key in raw:
        if key not in TOP_KEYS:
            raise _fail(f"unknown key {key!r}; allowed: {sorted(TOP_KEYS)}")
    matrix_name = check_name(raw.get("name", name), "name")
    profiles = raw.get("profiles") or {"default": {}}
    if not isinstance(profiles, dict):
        raise _fail(f"'profiles' must map profile names to settings, got {type(profiles).__name__}")
    chosen = check_name(profile or raw.get("profile") or next(iter(profiles)), "profile")
    if chosen not in profiles:
        raise _fail(f"unknown profile {chosen!r}; allowed: {sorted(profiles)}")
    prof = profiles[chosen] or {}
    if not isinstance(prof, dict):
        raise _fail(f"profile {chosen!r} must be a mapping")
    for key in prof:
        if key not in PROFILE_KEYS:
            raise _fail(f"profiles.{chosen} has unknown key {key!r}; allowed: {sorted(PROFILE_KEYS)}")
    grid_override = prof.get("grid") or {}
    if not isinstance(grid_override, dict) or not set(grid_override) <= set(GRID_KEYS):
        raise _fail(f"profiles.{chosen}.grid may only set {sorted(GRID_KEYS)}, got {grid_override!r}")
    grid = {key: _check_list({**raw, **grid_override}, key, kind) for key, kind in GRID_KEYS.items()}
    allowed_datasets = list_datasets()
    for d in grid["datasets"]:
        if d not in allowed_datasets:
            raise _fail(f"'datasets' has unknown dataset {d!r}; allowed: {allowed_datasets}")
    for ipc in grid["ipc"]:
        if ipc < 1:
            raise _fail(f"'ipc' has {ipc}; allowed: integers >= 1")
    for m in grid["methods"]:
        try:
            check_method_name(m)
        except UnknownMethodError as err:
            raise _fail(f"'methods': {err}") from None
    eval_archs = raw.get("eval_archs", grid["archs"])
    eval_archs = eval_archs if isinstance(eval_archs, list) else [eval_archs]
    for a in grid["archs"]:
        _check_arch(a, "'archs'")
    for a in eval_archs:
        _check_arch(a, "'eval_archs'")

    defaults = _check_settings(f"profiles.{chosen}.defaults", prof.get("defaults"))
    per_method: dict[str, dict[str, Any]] = {}
    for source, where in ((raw.get("overrides") or {}, "overrides"), (prof.get("methods") or {}, f"profiles.{chosen}.methods")):
        if not isinstance(source, dict):
            raise _fail(f"{where} must map method names to settings")
        for key, settings in source.items():
            method, _, ipc_part = str(key).partition("/ipc")
            if method not in grid["methods"] or (ipc_part and not ipc_part.isdigit()):
                raise _fail(f"{where} names {key!r}, not a method of 'methods' (optionally '<method>/ipc<N>'); "
                            f"allowed: {grid['methods']}")
            per_method.setdefault(str(key), {}).update(_check_settings(f"{where}.{key}", settings))
    fallback = prof.get("data_fallback")
    if fallback is not None and fallback not in allowed_datasets:
        raise _fail(f"profiles.{chosen}.data_fallback = {fallback!r}; allowed: {allowed_datasets}")

    task = raw.get("task", "distill")
    if task not in TASKS:
        raise _fail(f"task = {task!r}; allowed: {list(TASKS)}")
    variants = raw.get("variants") or {"": {}}
    if not isinstance(variants, dict):
        raise _fail(f"'variants' must map variant names to settings, got {type(variants).__name__}")
    variants = {check_name(k, "variant") if k else "": _check_settings(f"variants.{k}", v) for k, v in variants.items()}
    exclude = [*(raw.get("exclude") or []), *(prof.get("exclude") or [])]
    if not isinstance(exclude, list) or not all(isinstance(e, dict) and set(e) <= {*GRID_FIELDS, "variant"} for e in exclude):
        raise _fail(f"'exclude' must be a list of mappings over {sorted({*GRID_FIELDS, 'variant'})} "
                    "(a value may be a list: any of them matches)")
    cells = [
        Cell(matrix_name, chosen, d, ipc, m, a, s, tuple(eval_archs),
             {**defaults, **per_method.get(m, {}), **per_method.get(f"{m}/ipc{ipc}", {}), **vs},
             fallback, prof.get("max_per_class"), v, task)
        for d, ipc, m, a, s in itertools.product(*(grid[k] for k in GRID_KEYS))
        for v, vs in variants.items()
    ]
    cells = [c for c in cells if not any(all(getattr(c, k) in (val if isinstance(val, list) else [val])
                                             for k, val in e.items()) for e in exclude)]
    if not cells:
        raise _fail("'exclude' removes every cell: the grid is empty")
    separate = raw.get("separate_evaluation", False)
    if not isinstance(separate, bool):
        raise _fail(f"separate_evaluation = {separate!r}; allowed: true or false")
    if separate and task == "distill":
        cells = split_evaluation(cells)
    launcher = raw.get("launcher") or {}
    if not isinstance(launcher, dict):
        raise _fail(f"'launcher' must be a mapping, got {type(launcher).__name__}")
    for key in launcher:
        if key not in LAUNCHER_KEYS:
            raise _fail(f"launcher has unknown key {key!r}; allowed: {sorted(LAUNCHER_KEYS)}")
    layout = raw.get("layout", "table1")
    if not isinstance(layout, str):
        raise _fail(f"'layout' must be a layout name, got {layout!r}")
    return Matrix(matrix_name, chosen, cells, launcher, raw, layout)


def split_evaluation(cells: list[Cell]) -> list[Cell]:
    """Distil once, evaluate many times: every distillation cell stores its set and evaluates nothing;
    one 'evaluate' cell per evaluation architecture depends on it. Distillation cells come first."""
    distill = [dataclasses.replace(c, eval_archs=()) for c in cells]
    evaluate = [dataclasses.replace(c, task="evaluate", eval_archs=(arch,), source=d.id)
                for c, d in zip(cells, distill) for arch in c.eval_archs]
    return distill + evaluate


def load_matrix(path: str | Path, profile: str | None = None) -> Matrix:
    """Read and validate a matrix file."""
    path = Path(path)
    if not path.is_file():
        raise _fail(f"matrix file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _fail(f"{path}: not a text (UTF-8) file; a matrix is YAML") from None
    except yaml.YAMLError as err:
        raise _fail(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_matrix(raw, path.stem, profile)
