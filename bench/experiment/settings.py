"""A matrix's settings as typed data: evaluation, continual learning and launcher settings, each default stated
once here, and the one place every setting's type and range is checked.

A cell keeps the flat ``key: value`` mapping its matrix gave (that mapping is part of the cell's fingerprint,
so records stay comparable); code reads it only through the typed views below (``Cell.evaluation``,
``Cell.continual``, ``Cell.budget()``), never with ``settings.get(key) or default``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from methods.base import Budget
from methods.engine import CHOICES, EngineConfig


class SettingError(ValueError):
    """A setting with the wrong type or out of range; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class EvalSettings:
    """How a cell's set is evaluated."""

    runs: int = field(default=5, metadata={"key": "eval_runs"})                  # fresh networks per set
    epochs: int | None = field(default=None, metadata={"key": "eval_epochs"})    # None: the protocol's own
    protocol: str | None = field(default=None, metadata={"key": "eval_protocol"})  # None: the row's published one
    curve_epochs: int | None = field(default=None, metadata={"key": "eval_curve_epochs"})  # None: ``epochs``


@dataclass(frozen=True)
class ContinualSettings:
    """Class-incremental runs (``task: continual``)."""

    steps: int = field(default=5, metadata={"key": "cl_steps"})
    protocol: str = field(default="idc", metadata={"key": "cl_protocol"})
    eval_arch: str | None = field(default=None, metadata={"key": "cl_eval_arch"})   # None: the first eval_archs


@dataclass(frozen=True)
class Launcher:
    """Where and how cells run (the matrix's ``launcher:`` mapping)."""

    executor: str = "local"
    checkpoint_every: int = 10       # iterations between checkpoints, in-process and on Slurm alike (0: none)
    workers: int = 1                 # local executor: cells at once, each in a process with its share of the threads
    cells_per_gpu: int = 1           # Slurm / submitit: cells one job runs at once on its GPU (fewer if memory is short)
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
    def parse(cls, raw: Any) -> "Launcher":
        """The launcher of a matrix; unknown keys or wrong types raise SettingError."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise SettingError(f"'launcher' must be a mapping, got {type(raw).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in raw.items():
            if key not in known:
                raise SettingError(f"launcher has unknown key {key!r}; allowed: {sorted(known)}")
            if key in ("checkpoint_every", "timeout_min", "cpus_per_task", "gpus_per_task", "mem_gb", "array_parallelism",
                       "workers", "cells_per_gpu"):
                _check_int(f"launcher.{key}", value, 0 if key == "checkpoint_every" else 1)
        return cls(**raw)

    def slurm_parameters(self) -> dict[str, Any]:
        """submitit's names for the Slurm settings that were given."""
        names = {"partition": "slurm_partition", "array_parallelism": "slurm_array_parallelism",
                 "account": "slurm_account", "qos": "slurm_qos", "additional_parameters": "slurm_additional_parameters",
                 "setup": "slurm_setup", "gpus_per_task": "slurm_gpus_per_task", "cpus_per_task": "cpus_per_task",
                 "mem_gb": "mem_gb"}
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
    are the budget's (``Cell.budget()``), applied by the method at run time, not overrides."""
    return {k: v for k, v in settings.items() if k in ENGINE_KEYS and k not in BUDGET_KEYS}


# --- the one place types and ranges are checked -------------------------------------------------------

def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _at_least(low: int) -> Callable[[float], bool]:
    return lambda v: v >= low


RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{k: (_positive, "a finite number > 0") for k in ("lr_img", "net_lr")},
    **{k: (_at_least(1), "an integer >= 1") for k in (
        "iterations", "steps_per_network", "batch_real", "eval_runs", "eval_epochs", "eval_every", "eval_curve_epochs",
        "interval", "samples_per_cluster", "cl_steps", "net_batch", "factor", "batch_syn_max")},
    **{k: (_at_least(0), "a number >= 0") for k in ("feature_seed", "feature_epochs", "warmup_epochs", "net_update_epochs",
                                                     "net_update_samples", "momentum_img", "net_momentum",
                                                     "net_weight_decay")},
    "cutmix_p": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
}
_TYPES: dict[str, type] = {**{k: int for k in BUDGET_KEYS}, "eval_runs": int, "eval_epochs": int, "eval_curve_epochs": int,
                           "cl_steps": int, "eval_protocol": str, "cl_protocol": str, "cl_eval_arch": str}


def _check_int(where: str, value: Any, low: int) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise SettingError(f"{where} = {value!r}; allowed: an integer >= {low}")


def check_settings(where: str, settings: Any, protocols: list[str]) -> dict[str, Any]:
    """Check a flat settings mapping (a profile's defaults, a method's overrides, a variant) and return a copy.
    ``protocols`` are the names ``eval_protocol`` may take."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise SettingError(f"{where} must be a mapping of settings, got {type(settings).__name__}")
    engine_defaults = dataclasses.asdict(EngineConfig())
    for key, value in settings.items():
        if key not in SETTING_KEYS:
            raise SettingError(f"{where} has unknown setting {key!r}; allowed: {SETTING_KEYS}")
        if value is None:
            continue
        expected = _TYPES.get(key)
        if expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise SettingError(f"{where}.{key} = {value!r} must be {expected.__name__}")
        if key in ENGINE_KEYS and key != "objective":
            default = engine_defaults[key]
            if default is not None and not isinstance(value, type(default)) and not (
                    isinstance(default, float) and isinstance(value, int)):
                raise SettingError(f"{where}.{key} = {value!r} must be {type(default).__name__}")
        check = RANGES.get(key)
        if check is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and not check[0](value):
            raise SettingError(f"{where}.{key} = {value!r}; allowed: {check[1]}")
        if key in CHOICES and value not in CHOICES[key]:
            raise SettingError(f"{where}.{key} = {value!r}; allowed: {list(CHOICES[key])}")
        if key == "eval_protocol" and value not in protocols:
            raise SettingError(f"{where}.eval_protocol = {value!r}; allowed: {protocols}")
    return dict(settings)
