"""A matrix's settings as typed data: evaluation, continual learning and launcher settings, each default stated
once here, and the one place every setting's type and range is checked.

A cell keeps the flat ``key: value`` mapping its matrix gave (that mapping is part of the cell's fingerprint,
so records stay comparable); code reads it only through the typed views below (``Cell.evaluation``,
``Cell.continual``, ``Cell.budget()``), never with ``settings.get(key) or default``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.data.augment import FAMILIES as AUG_FAMILIES
from bench.data.augment import parse_strategy
from bench.experiment.continual import PROTOCOLS as CONTINUAL_PROTOCOLS
from methods.base import Budget
from methods.engine import CHOICES, EngineConfig
from methods.objectives import LAYER_RULES, METRICS, Objective


class SettingError(ValueError):
    """A setting with the wrong type or out of range; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class EvalSettings:
    """How a cell's set is evaluated."""

    runs: int = field(default=5, metadata={"key": "eval_runs"})  # fresh networks per set
    epochs: int | None = field(default=None, metadata={"key": "eval_epochs"})  # None: the protocol's own
    protocol: str | None = field(default=None, metadata={"key": "eval_protocol"})  # None: the row's published one
    curve_epochs: int | None = field(default=None, metadata={"key": "eval_curve_epochs"})  # None: ``epochs``


@dataclass(frozen=True)
class ContinualSettings:
    """Class-incremental runs (``task: continual``)."""

    steps: int = field(default=5, metadata={"key": "cl_steps"})
    protocol: str = field(default="idc", metadata={"key": "cl_protocol"})
    eval_arch: str | None = field(default=None, metadata={"key": "cl_eval_arch"})  # None: the first eval_archs


@dataclass(frozen=True)
class Launcher:
    """Where and how cells run (the matrix's ``launcher:`` mapping)."""

    executor: str = "local"
    checkpoint_every: int = 10  # iterations between checkpoints, in-process and on Slurm alike (0: none)
    workers: int = 1  # local executor: cells at once, each in a process with its share of the threads
    cells_per_gpu: int = 1  # Slurm / submitit: cells a job runs at once on its GPU (fewer if memory is short)
    timeout_min: int = 60
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    mem_gb: int | None = None
    partition: str | None = None
    array_parallelism: int | None = None
    account: str | None = None
    qos: str | None = None
    additional_parameters: dict[str, Any] | None = None
    setup: list[str] | None = None

    @classmethod
    def parse(cls, raw: Any) -> Launcher:
        """The launcher of a matrix; unknown keys or wrong types raise SettingError."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise SettingError(f"'launcher' must be a mapping, got {type(raw).__name__}")
        kinds = {name: _kind(hint) for name, hint in typing.get_type_hints(cls).items()}
        given = {}
        for key, value in raw.items():
            if key not in kinds:
                raise SettingError(f"launcher has unknown key {_show(key)}; allowed: {sorted(kinds)}")
            if value is None:  # null = unset: the default (None where the field allows it)
                if kinds[key].nullable:
                    given[key] = None
                continue
            if key == "additional_parameters":
                _check_parameters(f"launcher.{key}", value)
            elif key == "setup":
                _check_lines(f"launcher.{key}", value)
            else:
                low = (0 if key == "checkpoint_every" else 1) if kinds[key].type is int else None
                _check_value(f"launcher.{key}", value, _Spec(kinds[key].type, low=low))
            given[key] = value
        return cls(**given)

    def slurm_parameters(self) -> dict[str, Any]:
        """submitit's names for the Slurm settings that were given."""
        names = {
            "partition": "slurm_partition",
            "array_parallelism": "slurm_array_parallelism",
            "account": "slurm_account",
            "qos": "slurm_qos",
            "additional_parameters": "slurm_additional_parameters",
            "setup": "slurm_setup",
            "gpus_per_task": "slurm_gpus_per_task",
            "cpus_per_task": "cpus_per_task",
            "mem_gb": "mem_gb",
        }
        given = dataclasses.asdict(self)
        return {names[k]: given[k] for k in names if given[k] is not None}


def _flat_keys(cls: type) -> dict[str, str]:
    return {f.metadata["key"]: f.name for f in dataclasses.fields(cls)}


EVAL_KEYS = _flat_keys(EvalSettings)
CONTINUAL_KEYS = _flat_keys(ContinualSettings)
BUDGET_KEYS = {f.name: f.name for f in dataclasses.fields(Budget)}
ENGINE_KEYS = {f.name for f in dataclasses.fields(EngineConfig)}
SETTING_KEYS = sorted({*EVAL_KEYS, *CONTINUAL_KEYS, *BUDGET_KEYS, *ENGINE_KEYS})


def view(cls: type, settings: Mapping[str, Any]) -> Any:
    """The typed view ``cls`` of a flat settings mapping (absent or null keys take the dataclass defaults)."""
    keys = _flat_keys(cls) if cls is not Budget else BUDGET_KEYS
    return cls(**{name: settings[key] for key, name in keys.items() if settings.get(key) is not None})


def engine_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that replace fields of the method's EngineConfig. ``iterations`` and ``steps_per_network``
    are the budget's (``Cell.budget()``), applied by the method at run time, not overrides. A null is unset (the
    method's value) except for fields that may be None (``batch_syn_max: null`` is no cap)."""
    return {
        k: v
        for k, v in settings.items()
        if k in ENGINE_KEYS and k not in BUDGET_KEYS and (v is not None or _ENGINE_NULLABLE[k])
    }


# --- the one place types and ranges are checked -------------------------------------------------------
#
# A setting's type comes from its dataclass annotation (EngineConfig, Budget, EvalSettings, ContinualSettings),
# never from a list kept here; this table adds only ranges. Every number must be finite and every integer lie
# in (-2**31, 2**31), so seeds and counts stay within what torch, numpy and Slurm accept; strings are bounded.

INT_LIMIT = 2**31  # |integer| < this
MAX_TEXT = 1024  # characters in one string setting
MAX_ITEMS = 100  # entries of a launcher list or mapping


@dataclass(frozen=True)
class _Kind:
    """What an annotation allows: one value type (int, float, str, bool, dict, list or a dataclass), maybe None."""

    type: type
    nullable: bool


def _kind(hint: Any) -> _Kind:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    values = [a for a in args if a is not type(None)]
    if len(values) != 1:
        raise TypeError(f"setting annotation {hint!r}: one value type (optionally | None) is supported")
    return _Kind(typing.get_origin(values[0]) or values[0], len(values) != len(args))


@dataclass(frozen=True)
class _Spec:
    """A setting's value type and range; ``low`` is excluded when ``open_low``."""

    type: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] | None = None
    label: str = ""  # how the range reads in messages, when not derived


def _described(spec: _Spec) -> str:
    if spec.label:
        return spec.label
    if spec.choices is not None:
        return str(list(spec.choices))
    if spec.type is bool:
        return "true or false"
    if spec.type is str:
        return f"a string of at most {MAX_TEXT} characters"
    low = "" if spec.low is None else f" {'>' if spec.open_low else '>='} {spec.low:g}"
    if spec.type is int:
        return f"an integer{low} and < 2**31" if low else "an integer in (-2**31, 2**31)"
    high = "" if spec.high is None else f" and <= {spec.high:g}"
    return f"a finite number{low}{high}"


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (Python's 4300-digit limit)
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_value(where: str, value: Any, spec: _Spec) -> None:
    """``value`` has exactly the spec's type (a bool is never a number; an int is a float), is finite, lies in
    range, or is one of its choices; else one SettingError line ``<where> = <value>; allowed: ...``."""
    allowed = _described(spec)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    fits = {
        bool: isinstance(value, bool),
        int: number and isinstance(value, int),
        float: number,
        str: isinstance(value, str),
    }.get(spec.type, isinstance(value, spec.type))
    if not fits:
        raise SettingError(f"{where} = {_show(value)} must be {spec.type.__name__}; allowed: {allowed}")
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise SettingError(f"{where} = {_show(value)} ({len(value)} characters); allowed: {allowed}")
        if spec.choices is not None and value not in spec.choices:
            raise SettingError(f"{where} = {_show(value)}; allowed: {allowed}")
    if number:
        if spec.type is int:
            ok = -INT_LIMIT < value < INT_LIMIT
        else:
            try:
                ok = math.isfinite(float(value))
            except OverflowError:  # an integer too large for a float
                ok = False
        if ok and spec.low is not None:
            ok = value > spec.low if spec.open_low else value >= spec.low
        if ok and spec.high is not None:
            ok = value <= spec.high
        if not ok:
            raise SettingError(f"{where} = {_show(value)}; allowed: {allowed}")


def _check_parameters(where: str, value: Any) -> None:
    """Extra Slurm options: a mapping of option names to one number, string or true/false each."""
    allowed = f"a mapping of at most {MAX_ITEMS} option names to a number, string or true/false"
    if not isinstance(value, Mapping) or len(value) > MAX_ITEMS:
        raise SettingError(f"{where} = {_show(value)}; allowed: {allowed}")
    for name, item in value.items():
        _check_value(f"{where} key", name, _Spec(str))
        if isinstance(item, bool):
            continue
        if not isinstance(item, (str, int, float)):
            raise SettingError(f"{where}.{name} = {_show(item)}; allowed: a number, string or true/false")
        _check_value(f"{where}.{name}", item, _Spec(type(item)))


def _check_lines(where: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise SettingError(f"{where} = {_show(value)}; allowed: a list of at most {MAX_ITEMS} lines (strings)")
    for i, line in enumerate(value):
        _check_value(f"{where}[{i}]", line, _Spec(str))


def _flat_hints() -> dict[str, _Kind]:
    """Every flat setting key -> its annotation's kind (keys of several views agree on the type; nullable if any
    view allows None)."""
    sources: list[tuple[type, dict[str, str]]] = [
        (Budget, BUDGET_KEYS),
        (EvalSettings, EVAL_KEYS),
        (ContinualSettings, CONTINUAL_KEYS),
        (EngineConfig, {k: k for k in ENGINE_KEYS}),
    ]
    kinds: dict[str, _Kind] = {}
    for cls, keys in sources:
        hints = typing.get_type_hints(cls)
        for key, name in keys.items():
            kind = _kind(hints[name])
            if key in kinds:
                if kinds[key].type is not kind.type:
                    raise TypeError(f"setting {key!r} is {kinds[key].type.__name__} and {kind.type.__name__}")
                kind = _Kind(kind.type, kind.nullable or kinds[key].nullable)
            kinds[key] = kind
    return kinds


_KINDS = _flat_hints()
_ENGINE_NULLABLE = {k: _kind(h).nullable for k, h in typing.get_type_hints(EngineConfig).items()}

# Ranges (the types come from the annotations): (low, high, low excluded).
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "lr_img": (0, 1e6, True),  # far above any published rate; larger ones overflow the images to inf/NaN
    "net_lr": (0, 1e3, True),
    **{
        k: (1, None, False)
        for k in (
            "iterations",
            "steps_per_network",
            "batch_real",
            "eval_runs",
            "eval_epochs",
            "eval_every",
            "eval_curve_epochs",
            "interval",
            "samples_per_cluster",
            "cl_steps",
            "net_batch",
            "factor",
            "batch_syn_max",
        )
    },
    **{
        k: (0, None, False)
        for k in (
            "feature_seed",
            "feature_epochs",
            "warmup_epochs",
            "net_update_epochs",
            "net_update_samples",
        )
    },
    **{k: (0, 1, False) for k in ("momentum_img", "net_momentum", "net_weight_decay", "cutmix_p")},
}


def _spec(key: str) -> _Spec:
    low, high, open_low = _RANGES.get(key, (None, None, False))
    kind = _KINDS[key]
    label = {"cutmix_p": "a probability in [0, 1]", "objective": "a mapping of objective fields"}.get(key, "")
    return _Spec(kind.type, low, high, open_low, {**CHOICES, "cl_protocol": CONTINUAL_PROTOCOLS}.get(key), label)


def _check_strategy(where: str, value: str) -> None:
    """An augmentation strategy: families joined by '_' ('' = none)."""
    try:
        parse_strategy(value)
    except ValueError:
        raise SettingError(
            f"{where} = {_show(value)}; allowed: '' (none) or families joined by '_' from {sorted(AUG_FAMILIES)}, "
            "e.g. 'color_crop_cutout'"
        ) from None


_STRING_CHECKS = {"match_aug": _check_strategy, "net_aug": _check_strategy}


SPECS: dict[str, _Spec] = {key: _spec(key) for key in SETTING_KEYS}
_OBJECTIVE_KINDS = {name: _kind(hint) for name, hint in typing.get_type_hints(Objective).items()}


def _check_objective(where: str, value: Any) -> None:
    """``objective``: a mapping of Objective fields (weights finite and >= 0, metric and layer names known)."""
    allowed = f"a mapping of {sorted(_OBJECTIVE_KINDS)}"
    if not isinstance(value, Mapping) or len(value) > len(_OBJECTIVE_KINDS):
        raise SettingError(f"{where} = {_show(value)}; allowed: {allowed}")
    for name, item in value.items():
        if name not in _OBJECTIVE_KINDS:
            raise SettingError(f"{where} has unknown field {_show(name)}; allowed: {sorted(_OBJECTIVE_KINDS)}")
        kind = _OBJECTIVE_KINDS[name].type
        choices = {"metric": METRICS, "feature_metric": METRICS, "layers": LAYER_RULES}.get(name)
        if choices is not None and (not isinstance(item, str) or item not in choices):  # the names it may take
            raise SettingError(f"{where}.{name} = {_show(item)}; allowed: one of {sorted(choices)}")
        _check_value(f"{where}.{name}", item, _Spec(kind, low=0 if kind is float else None))
    # both weights 0 is checked once merged with the method's own objective (bench.experiment.reads): DM's
    # {gradient_weight: 0} is its own value, not an objective without terms


def check_settings(
    where: str, settings: Any, protocols: list[str], names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Check a flat settings mapping (a profile's defaults, a method's overrides, a variant) and return a copy.
    ``protocols`` are the names ``eval_protocol`` may take; ``names`` says how a flat key was written (e.g.
    ``eval_runs`` -> ``evaluation.runs``), for the messages. Null is always allowed: it means unset."""
    names = names or {}
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise SettingError(f"{where} must be a mapping of settings, got {type(settings).__name__}")
    checked = dict(settings)
    for key, value in settings.items():
        if key not in SPECS:
            raise SettingError(f"{where} has unknown setting {_show(key)}; allowed: {SETTING_KEYS}")
        if value is None:
            continue
        written = f"{where}.{names.get(key, key)}"
        if key == "objective":
            _check_objective(written, value)
            checked[key] = {k: _as_float(v) if _OBJECTIVE_KINDS[k].type is float else v for k, v in value.items()}
            continue
        spec = SPECS[key]
        if key == "eval_protocol":
            spec = dataclasses.replace(spec, choices=tuple(protocols))
        _check_value(written, value, spec)
        if key in _STRING_CHECKS:
            _STRING_CHECKS[key](written, value)
        if spec.type is float:
            checked[key] = _as_float(value)
    return checked


def _as_float(value: Any) -> Any:
    """A float setting written as an integer (``lr_img: 1``) is the same setting as ``1.0`` (and ``-0.0`` as
    ``0.0``): one fingerprint."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value) + 0.0  # and -0.0 is 0.0
