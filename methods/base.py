"""The one interface every method implements, and the registry that names them.

A method turns (real training data, images per class, a distillation-network factory, a budget, a seed)
into a :class:`DistilledSet`. Methods are registered as :class:`MethodSpec` records (kind, builder, evaluation
protocol) like timm models; composite names such as ``IDC+rm+init+bm`` are resolved by :mod:`methods.components`.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from bench.core.names import check_base_name
from bench.core.registry import Registry, UnknownNameError
from bench.data.loaders import ImageDataset
from methods.config import Budget, EngineConfig
from methods.representation import decode

NetFactory = Callable[[], nn.Module]


@dataclass
class DistilledSet:
    """Stored images in [0, 1] pixel space plus how to decode them (IDC multi-formation factor)."""

    images: torch.Tensor
    labels: torch.Tensor
    factor: int = 1
    log: list[dict[str, float]] = field(default_factory=list)  # (iteration, metric...) points
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    meta: dict[str, Any] = field(default_factory=dict)

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images the set stands for (f*f images per stored image)."""
        return decode(self.images, self.factor), self.labels.repeat(self.factor**2)

    def state(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu(), "labels": self.labels.cpu(), "factor": self.factor}


class Method(abc.ABC):
    """A distillation or coreset-selection method. Every attribute a caller reads is declared here."""

    name: str = "method"
    # evaluation protocol name (bench.learning.evaluation); built-ins take theirs from bench.learning.provenance
    eval_protocol: str = "A"
    config: EngineConfig | None = None  # engine methods: the full configuration; None for coresets
    selection_rule: dict[str, Any] | None = None  # coresets: rule choices that decide the set (fingerprinted)
    feature_recipe: dict[str, Any] | None = None  # coresets that pick with a trained network: how it is trained

    @property
    def factor(self) -> int:
        """Multi-formation factor of the stored images (1 unless the configuration says otherwise)."""
        return self.config.factor if self.config is not None else 1

    def inner_loops(self, budget: Budget) -> int:
        """Image-update steps a run under ``budget`` makes (0 for selection methods)."""
        if self.config is None:
            return 0
        cfg = self.config.with_budget(budget)
        return cfg.iterations * cfg.steps_per_network

    def cost(self, budget: Budget, ipc: int, classes: int) -> tuple[float, str]:
        """Images pushed through the matching network (networks x steps x classes x (real + synthetic)), a
        unit that scales with GPU time, and the sum spelled out; 0 for selection methods."""
        if self.config is None:
            return 0.0, "coreset selection + evaluation"
        cfg = self.config.with_budget(budget)
        per_class = cfg.batch_real + min(ipc * cfg.factor**2, cfg.batch_syn_max or 10**9)
        units = cfg.iterations * cfg.steps_per_network * classes * per_class
        return units, (
            f"{cfg.iterations} nets x {cfg.steps_per_network} steps x {per_class} images/class = "
            f"{units / 1e6:.2f}M images"
        )

    def feature_network(self, budget: Budget, seed: int) -> tuple[int, int] | None:
        """(seed, epochs) of the network a selection picks with under ``budget``; None for methods without one."""
        return None

    def preparation(self, budget: Budget, seed: int) -> tuple[Any, ...] | None:
        """What a run under ``budget`` needs that other runs share and that is worth building once, before
        them (e.g. a coreset's feature network), as a key; None when nothing. Schedulers use it so that no
        worker waits on another that is building it."""
        return None

    def prepare(self, data: ImageDataset, make_net: NetFactory, budget: Budget, seed: int, cache_dir: Path) -> None:
        """Build what :meth:`preparation` names and keep it under ``cache_dir``, where ``distill`` finds it."""

    @abc.abstractmethod
    def distill(
        self, data: ImageDataset, ipc: int, make_net: NetFactory, budget: Budget, seed: int, **hooks: Any
    ) -> DistilledSet:
        """Produce ``ipc`` stored images per class."""


class UnknownMethodError(UnknownNameError, ValueError):
    """A method name (or one of its DREAM switches) that is not registered."""


@dataclass(frozen=True)
class MethodSpec:
    """What a registered method is, stated once: its kind, how to build it, how its row was evaluated.

    ``kind`` is 'engine' (a configuration of the distillation engine: ``configure(dataset, ipc)`` gives it,
    and the DREAM switches apply) or 'coreset' (selects real images). ``build(dataset, ipc, config)`` makes
    the method (``config`` None for coresets). ``same_as`` names an equivalent composite (DREAM =
    'IDC+rm+init'), which the component tables use to line rows up.
    """

    name: str
    kind: Literal["engine", "coreset"]
    build: Callable[[str, int, EngineConfig | None], Method]
    eval_protocol: str
    configure: Callable[[str, int], EngineConfig] | None = None
    same_as: str | None = None
    description: str = ""  # one line for `dreambench ls methods`
    uses_feature_network: bool = False  # coresets that pick with a trained network (feature_epochs/_seed apply)

    def __post_init__(self) -> None:
        if (self.kind == "engine") != (self.configure is not None):
            raise ValueError(f"method {self.name!r}: an 'engine' method needs configure, a 'coreset' one has none")

    def ignored_settings(self) -> frozenset[str]:
        """Flat setting keys (Budget and EngineConfig fields) this method never reads: a matrix that gives one
        for this method alone is refused, and one given for every method is left out of this method's cells."""
        feature = set() if self.uses_feature_network else {"feature_epochs", "feature_seed"}
        if self.kind == "engine":
            return frozenset(feature)
        engine_only = {f.name for f in dataclasses.fields(EngineConfig)} | {"iterations", "steps_per_network"}
        return frozenset(feature | engine_only | {"eval_every"})


METHODS: Registry[MethodSpec] = Registry("method", UnknownMethodError)


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register a method under ``spec.name`` (a name already taken, or one the name grammar cannot tell apart
    from its switches, raises ValueError)."""
    return METHODS.add(check_base_name(spec.name), spec)


def list_methods() -> list[str]:
    """Registered base names, in registration order (the order of the paper's tables)."""
    return METHODS.names()


def method_spec(name: str) -> MethodSpec:
    """The registered base method ``name``; unknown names raise UnknownMethodError listing the known ones."""
    return METHODS.get(name)
