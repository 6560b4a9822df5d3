"""DREAM/DREAM+ parts as switches on any matching base: ``IDC+rm+init``, ``DC+rm+init+bm``, ``DM+rm``.

Composition rules (documented in docs/deviations.md, docs/official-code.md §13.16):
- ``rm``: representative matching; the base's random real batch is replaced by 128 cluster-nearest images
  per class (DREAM's batch), re-clustered every ``interval`` steps with the current matching network.
- ``init``: cluster-centre initialisation (tiled f x f when the base uses multi-formation).
- ``bm``: bidirectional objective; adds the missing term with weight 1: a feature-mean term to gradient
  bases (metric = the base metric, 'mse' for DC's 'ours'), a conv-gradient term to DM.
- ``wu``: one warm-up epoch on real data for every fresh matching network (DREAM+).
"""

from __future__ import annotations

from typing import Any, Callable

from bench.core.names import split_method_name
from methods.base import (
    METHODS,
    Method,
    MethodSpec,
    UnknownMethodError,
    method_spec,
)
from methods.engine import EngineConfig
from methods.objectives import Objective


def _rm(cfg: EngineConfig) -> EngineConfig:
    return cfg.replace(sampler="representative", batch_real=128)


def _init(cfg: EngineConfig) -> EngineConfig:
    return cfg.replace(init="cluster")


def _bm(cfg: EngineConfig) -> EngineConfig:
    o = cfg.objective
    if o.gradient_weight == 0:
        return cfg.replace(objective=Objective(1.0, o.feature_weight, "mse", o.feature_metric, "conv"))
    feature_metric = o.metric if o.metric in ("mse", "l1") else "mse"
    return cfg.replace(objective=Objective(o.gradient_weight, 1.0, o.metric, feature_metric, o.layers))


def _wu(cfg: EngineConfig) -> EngineConfig:
    return cfg.replace(warmup_epochs=1)


COMPONENTS: dict[str, Callable[[EngineConfig], EngineConfig]] = {"rm": _rm, "init": _init, "bm": _bm, "wu": _wu}
# what each switch must still hold in the final configuration, so a setting cannot silently undo the name's switch
SWITCH_HOLDS: dict[str, tuple[str, Callable[[EngineConfig], bool]]] = {
    "rm": ("sampler representative", lambda c: c.sampler == "representative"),
    "init": ("init cluster", lambda c: c.init == "cluster"),
    "bm": (
        "both objective weights above 0",
        lambda c: c.objective.gradient_weight > 0 and c.objective.feature_weight > 0,
    ),
    "wu": ("warmup_epochs at least 1", lambda c: c.warmup_epochs >= 1),
}


def split_name(name: str) -> tuple[str, list[str]]:
    """'DREAM++bm' -> ('DREAM+', ['bm']), by the name grammar (bench.core.names), not by registry lookups."""
    return split_method_name(name)


def resolve(name: str) -> tuple[MethodSpec, list[str]]:
    """The registered base of ``name`` and its DREAM switches; raises UnknownMethodError naming the bad part."""
    base, parts = split_name(name)
    try:
        spec = method_spec(base)
    except UnknownMethodError:
        if name.endswith("+") and len(name) > 1:  # 'DC+rm+': a component left half-written
            try:
                resolve(name[:-1])
            except UnknownMethodError:
                pass
            else:
                raise UnknownMethodError(f"unknown method {name!r} (a trailing '+'); write {name[:-1]!r}") from None
        fixed = _lowercase_switches(name)
        if fixed is None:
            raise
        raise UnknownMethodError(
            f"unknown method {name!r}; components are lowercase: write {fixed!r} (components: {', '.join(COMPONENTS)})"
        ) from None
    for part in parts:
        if part not in COMPONENTS:
            raise UnknownMethodError(f"unknown component {part!r} in method {name!r}; allowed: {', '.join(COMPONENTS)}")
        if spec.kind != "engine":
            raise UnknownMethodError(f"component {part!r} needs a matching base; {base!r} is a {spec.kind} method")
    # one name per method, so one row per method: each component once, in the order of COMPONENTS
    implied = split_name(spec.same_as)[1] if spec.same_as else []
    canonical = [c for c in COMPONENTS if c in parts]
    if len(set(parts)) < len(parts) or set(parts) & set(implied) or parts != canonical:
        already = sorted(set(parts) & set(implied))
        why = f"{base!r} already includes {', '.join(already)}" if already else "each component once, in order"
        fixed = "+".join([base, *[c for c in canonical if c not in implied]])
        raise UnknownMethodError(
            f"method {name!r}: {why}; write {fixed!r} (components in the order {', '.join(COMPONENTS)})"
        )
    return spec, parts


def _lowercase_switches(name: str) -> str | None:
    """'DC+RM' -> 'DC+rm': the name it was meant to be (switches lowercased, each once, in order, none the base
    already has), when the rest names an engine base and known components; else None."""
    for base in sorted(METHODS.names(), key=len, reverse=True):
        if name.startswith(base + "+") and len(name) > len(base) + 1:
            parts = name[len(base) + 1 :].lower().split("+")
            spec = method_spec(base)
            if spec.kind != "engine" or not all(part in COMPONENTS for part in parts):
                return None
            implied = split_name(spec.same_as)[1] if spec.same_as else []
            return "+".join([base, *[c for c in COMPONENTS if c in parts and c not in implied]])
    return None


def method_kind(name: str) -> str:
    """'engine', 'coreset' or 'composite' (an engine base with DREAM switches)."""
    spec, parts = resolve(name)
    return "composite" if parts else spec.kind


def check_method_name(name: str) -> None:
    """Raise UnknownMethodError naming the bad part and the allowed values."""
    resolve(name)


def create_method(name: str, dataset: str, ipc: int, overrides: dict[str, Any] | None = None) -> Method:
    """Build a registered method, apply its component switches, then the caller's config overrides."""
    spec, parts = resolve(name)
    if spec.configure is None:  # coresets have no engine settings: profile defaults do not apply
        return spec.build(dataset, ipc, None)
    cfg = spec.configure(dataset, ipc)
    for part in parts:
        cfg = COMPONENTS[part](cfg)
    cfg = apply_overrides(cfg, dict(overrides or {}))
    method = spec.build(dataset, ipc, cfg)
    method.name = name
    return method


def expand_same_as(name: str) -> tuple[str, list[str]]:
    """A method as its base and switches with the registry's equivalences applied: 'DREAM+bm' ->
    ('IDC', ['rm', 'init', 'bm']), so rows of the component tables line up with Table III. Names no longer
    registered (an old record) are split as written."""
    try:
        spec, parts = resolve(name)
    except UnknownMethodError:
        return split_name(name)
    if spec.same_as is None:
        return spec.name, parts
    base, implied = split_name(spec.same_as)
    return base, [*implied, *parts]


def apply_overrides(cfg: EngineConfig, overrides: dict[str, Any]) -> EngineConfig:
    """Set EngineConfig fields by name; ``objective`` takes a dict of Objective fields."""
    fields = set(EngineConfig.__dataclass_fields__)
    for key in overrides:
        if key not in fields:
            raise KeyError(f"unknown method setting {key!r}; allowed: {sorted(fields)}")
    changes = dict(overrides)
    if isinstance(changes.get("objective"), dict):
        changes["objective"] = Objective(**{**cfg.objective.__dict__, **changes["objective"]})
    return cfg.replace(**changes)


SWITCH_KEYS = {"rm": "sampler", "init": "init", "bm": "objective", "wu": "warmup_epochs"}  # what each one sets


def switch_mismatches(name: str, dataset: str, ipc: int, cfg: EngineConfig) -> tuple[list[tuple[str, str]], str]:
    """Where ``cfg`` and the name ``name`` disagree on the switches (its registered equivalents' included: DREAM is
    IDC+rm+init): (switch, 'undoes') for a named one ``cfg`` no longer holds, (switch, 'turns on') for an unnamed
    one ``cfg`` holds though the name's own configuration does not. Also the name of what ``cfg`` runs."""
    base, parts = expand_same_as(name)
    own = create_method(name, dataset, ipc).config
    assert own is not None
    mismatches, runs = [], []
    for part, (_, holds) in SWITCH_HOLDS.items():
        if part in parts and not holds(cfg):
            mismatches.append((part, "undoes"))
        elif part not in parts and holds(cfg) and not holds(own):
            mismatches.append((part, "turns on"))
        if holds(cfg) and (part in parts or not holds(own)):
            runs.append(part)
    return mismatches, base + "".join(f"+{p}" for p in runs)
