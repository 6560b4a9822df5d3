"""The one interface every method implements, and the registry that names them.

A method turns (real training data, images per class, a distillation-network factory, a budget, a seed)
into a :class:`DistilledSet`. Methods are registered by name like timm models; composite names such as
``IDC+rm+init+bm`` are resolved by :mod:`methods.components`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from bench.data import ImageDataset

NetFactory = Callable[[], nn.Module]


@dataclass
class Budget:
    """How much work a run may do; ``None`` keeps the preset's (paper) value."""

    iterations: int | None = None          # fresh networks (outer iterations)
    steps_per_network: int | None = None   # image updates per network
    eval_every: int | None = None          # evaluate the set every K iterations (curves); None = never
    feature_epochs: int | None = None      # coresets: epochs of the feature / forgetting network
    feature_seed: int | None = None        # coresets: seed of that network (None: the cell's seed)


@dataclass
class DistilledSet:
    """Stored images in [0, 1] pixel space plus how to decode them (IDC multi-formation factor)."""

    images: torch.Tensor
    labels: torch.Tensor
    factor: int = 1
    log: list[dict[str, float]] = field(default_factory=list)   # (iteration, metric...) points
    timings: dict[str, float] = field(default_factory=dict)     # seconds per phase
    meta: dict[str, Any] = field(default_factory=dict)

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images the set stands for (f*f images per stored image)."""
        from methods.representation import decode

        return decode(self.images, self.factor), self.labels.repeat(self.factor**2)

    def state(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu(), "labels": self.labels.cpu(), "factor": self.factor}


class Method(abc.ABC):
    """A distillation or coreset-selection method."""

    name: str = "method"
    eval_protocol: str = "A"   # evaluation protocol name (bench.evaluate); built-ins take theirs from bench.provenance

    @abc.abstractmethod
    def distill(
        self, data: ImageDataset, ipc: int, make_net: NetFactory, budget: Budget, seed: int, **hooks: Any
    ) -> DistilledSet:
        """Produce ``ipc`` stored images per class."""


class UnknownMethodError(ValueError):
    pass


_REGISTRY: dict[str, Callable[..., Method]] = {}


def register_method(name: str) -> Callable[[Callable[..., Method]], Callable[..., Method]]:
    """Decorator: register a factory ``(dataset_name, ipc, **overrides) -> Method`` under ``name``."""

    def wrap(factory: Callable[..., Method]) -> Callable[..., Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def base_factory(name: str) -> Callable[..., Method]:
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; allowed: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
