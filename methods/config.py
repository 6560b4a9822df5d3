"""The settings of a run, as data: its budget (how much work) and the engine configuration (every knob of a
matching-based distillation). Plain dataclasses with no behaviour beyond validation, so every layer can read
them without importing the engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from methods.objectives import Objective


@dataclass
class Budget:
    """How much work a run may do; ``None`` keeps the preset's (paper) value."""

    iterations: int | None = None  # fresh networks (outer iterations)
    steps_per_network: int | None = None  # image updates per network
    eval_every: int | None = None  # evaluate the set every K iterations (curves); None = never
    feature_epochs: int | None = None  # coresets: epochs of the feature / forgetting network (0: untrained)
    feature_seed: int | None = None  # coresets: seed of that network (None: the cell's seed)


@dataclass
class EngineConfig:
    """Every knob of a matching-based distillation run. Field names are neutral (docs/official-code.md §1)."""

    # representation
    factor: int = 1
    space: str = "normalized"  # 'normalized' (DC family, never clamped) | 'pixel' (IDC family, clamped)
    init: str = "noise"  # noise | real_first | real_random | mix | cluster
    # real batches
    sampler: str = "random"  # random | representative
    batch_real: int = 256
    interval: int = 10  # representative: re-cluster every `interval` steps
    samples_per_cluster: int = 1  # representative: batch_real // samples_per_cluster centres
    cluster_normalized: bool = False  # cluster on normalised images (official: unnormalised)
    # objective
    objective: Objective = field(default_factory=Objective)
    # network schedule
    iterations: int = 1000  # fresh networks (outer iterations)
    steps_per_network: int = 1  # image updates per network
    net_update: str = "none"  # none | synthetic (DC) | real (IDC)
    net_update_epochs: int = 1  # synthetic: epochs over the synthetic set per update
    net_update_samples: int = 2000  # real: samples seen per update (IDC's n_data)
    net_batch: int = 256
    warmup_epochs: int = 0  # DREAM+: one full epoch on real data per fresh network
    net_lr: float = 0.01
    net_momentum: float = 0.0
    net_weight_decay: float = 0.0
    # image optimiser
    lr_img: float = 0.1
    momentum_img: float = 0.5
    per_class_step: bool = False  # IDC: one optimiser step per class (shared momentum)
    batch_syn_max: int | None = None  # subsample decoded synthetic images per class
    # augmentation
    match_aug: str = ""  # Siamese strategy during matching ('' = none)
    match_aug_mode: str = "single"  # single (DC) | composite (IDC)
    net_aug: str = ""  # per-image strategy for in-loop network training
    net_aug_mode: str = "single"
    cutmix_p: float = 0.0
    # arithmetic
    precision: str = "float32"  # float32 | bfloat16 (opt-in: matching and network updates under bf16 autocast)
    # diagnostics
    mmd_diagnostic: bool = False  # MMD(matched real batch, whole class) every `interval` steps (timed as image update)

    def replace(self, **changes: Any) -> EngineConfig:
        return dataclasses.replace(self, **changes)

    def with_budget(self, budget: Budget) -> EngineConfig:
        changes = {
            k: v
            for k, v in (("iterations", budget.iterations), ("steps_per_network", budget.steps_per_network))
            if v is not None
        }
        return self.replace(**changes)


SAMPLERS = ("random", "representative")
NET_UPDATES = ("none", "synthetic", "real")
SPACES = ("normalized", "pixel")
PRECISIONS = ("float32", "bfloat16")
INITS = ("cluster", "mix", "noise", "real_first", "real_random")  # methods.initializers.INITIALIZERS (a test checks)
AUG_MODES = ("single", "composite")
CHOICES: dict[str, tuple[str, ...]] = {
    "init": INITS,
    "match_aug_mode": AUG_MODES,
    "net_aug_mode": AUG_MODES,
    "sampler": SAMPLERS,
    "net_update": NET_UPDATES,
    "space": SPACES,
    "precision": PRECISIONS,
}


def validate(cfg: EngineConfig) -> None:
    """Reject impossible configurations with the bad key, its value and the allowed values."""
    for key, allowed in CHOICES.items():
        value = getattr(cfg, key)
        if value not in allowed:
            raise ValueError(f"{key}={value!r} is not allowed; allowed: {list(allowed)}")


def unread_fields(cfg: EngineConfig) -> dict[str, str]:
    """The fields the engine never reads under ``cfg`` (its network schedule, sampler and augmentations), each
    with the reason: a cell leaves them out, so changing one never makes a finished cell stale, and a setting
    given for one method alone that it never reads is refused. Mirrors methods/engine.py; a test changes every
    field listed here and checks the distilled set is bit-identical."""
    unread: dict[str, str] = {}
    updates = cfg.net_update != "none" and cfg.steps_per_network > 1  # updates run between a network's steps
    if not (updates or cfg.warmup_epochs):
        why = "it trains no network (net_update none or one step per network, and no warm-up)"
        unread |= dict.fromkeys(
            ("net_lr", "net_momentum", "net_weight_decay", "net_aug", "net_aug_mode", "cutmix_p"), why
        )
    if not (updates and cfg.net_update == "synthetic"):
        unread |= dict.fromkeys(("net_batch", "net_update_epochs"), "it never trains a network on the synthetic set")
    if not (updates and cfg.net_update == "real"):
        unread["net_update_samples"] = "it never updates a network on real data between steps"
    if not cfg.net_aug:
        unread.setdefault("net_aug_mode", "net_aug is empty (no augmentation to apply)")
    if not cfg.match_aug:
        unread["match_aug_mode"] = "match_aug is empty (no augmentation to apply)"
    if cfg.sampler != "representative":
        unread["samples_per_cluster"] = "its real batches are random (sampler random), never clustered"
        if not cfg.mmd_diagnostic:
            unread["interval"] = "its real batches are random (sampler random) and mmd_diagnostic is off"
        if cfg.init != "cluster":
            unread["cluster_normalized"] = "it clusters nothing (sampler random, init not cluster)"
    return unread
