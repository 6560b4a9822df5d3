"""Coreset baselines of Table I: Random, Herding, K-Center greedy and Forgetting (spec section 9).

Herding, K-Center and Forgetting need a network trained on the whole training set; one training run per
(dataset, network, seed, epochs) gives both the embeddings and the forgetting counts, and is cached in
the process so that the three methods and both IPCs reuse it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from bench.data import ImageDataset
from bench.training import build_net, default_device, seeded, train_epoch
from methods.base import Budget, DistilledSet, Method, NetFactory, register_method
from methods.sampling import embed_all

Selector = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]   # (class features, ipc, gen) -> indices


def herding(features: torch.Tensor, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """Greedy herding: at step t pick the unselected x minimising ||t*mu - s - x|| (IDC's argmin rule)."""
    mu = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool)
    for t in range(1, min(k, len(features)) + 1):
        dist = (t * mu - running - features).norm(dim=1)
        dist[~available] = float("inf")
        pick = int(dist.argmin())
        chosen.append(pick)
        available[pick] = False
        running += features[pick]
    return torch.tensor(chosen, dtype=torch.long)


def k_center_greedy(features: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Start from a uniformly random point; repeatedly add the point farthest from the selected set."""
    first = int(torch.randint(len(features), (1,), generator=gen))
    chosen = [first]
    min_dist = (features - features[first]).norm(dim=1)
    for _ in range(min(k, len(features)) - 1):
        pick = int(min_dist.argmax())
        chosen.append(pick)
        min_dist = torch.minimum(min_dist, (features - features[pick]).norm(dim=1))
    return torch.tensor(chosen, dtype=torch.long)


@dataclass
class FeatureNetwork:
    """A network trained on the full training set, with per-sample forgetting counts from that training."""

    net: nn.Module
    forgetting: torch.Tensor   # forgetting events per training sample; never-learned samples are +inf


_FEATURE_CACHE: dict[Any, FeatureNetwork] = {}


def train_feature_network(data: ImageDataset, make_net: NetFactory, seed: int, epochs: int) -> FeatureNetwork:
    """Train on all real data (SGD 0.01, momentum 0.9, wd 5e-4, batch 256, no augmentation)."""
    key = (data.name, len(data.train_images), getattr(make_net, "cache_key", id(make_net)), seed, epochs)
    if key in _FEATURE_CACHE:
        return _FEATURE_CACHE[key]
    device = default_device()
    net = build_net(make_net, seed, device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    n = len(data.train_images)
    last_correct = torch.zeros(n, dtype=torch.bool)
    learned = torch.zeros(n, dtype=torch.bool)
    events = torch.zeros(n)
    labels = data.train_labels

    def track(idx: torch.Tensor, logits: torch.Tensor) -> None:
        correct = logits.argmax(1).cpu() == labels[idx]
        events[idx] += (last_correct[idx] & ~correct).float()
        last_correct[idx] = correct
        learned[idx] |= correct

    gen = seeded(seed)
    for _ in range(epochs):
        train_epoch(net, opt, data.train_images, labels, batch_size=256, to_input=data.normalize, gen=gen, on_batch=track)
    events[~learned] = float("inf")   # Toneva et al.: never learned = forgotten infinitely often
    result = FeatureNetwork(net.eval(), events)
    _FEATURE_CACHE[key] = result
    return result


class Coreset(Method):
    """Select ``ipc`` real images per class; the images are stored unchanged (factor 1)."""

    eval_protocol = "A"

    def __init__(self, name: str, needs_network: bool, choose: Callable[["Coreset", ImageDataset, int, int, FeatureNetwork | None, torch.Generator], torch.Tensor]) -> None:
        self.name = name
        self.needs_network = needs_network
        self._choose = choose

    def distill(self, data: ImageDataset, ipc: int, make_net: NetFactory, budget: Budget, seed: int, **hooks: Any) -> DistilledSet:
        start = time.perf_counter()
        feature_net = None
        if self.needs_network:
            feature_net = train_feature_network(data, make_net, seed, budget.feature_epochs or 30)
        gen = seeded(seed)
        picks = [data.class_indices(c)[self._choose(self, data, c, ipc, feature_net, gen)] for c in range(data.num_classes)]
        idx = torch.cat(picks)
        seconds = time.perf_counter() - start
        return DistilledSet(data.train_images[idx].clone(), data.train_labels[idx].clone(), 1, [], {"selection": seconds},
                            {"method": self.name, "indices": idx.tolist()})


def _random(self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(len(data.class_indices(c)), generator=gen)[:ipc]


def _whole(self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator) -> torch.Tensor:
    return torch.arange(len(data.class_indices(c)))   # the whole class: Table II's upper bound


def _by_features(selector: Selector):
    def choose(self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator) -> torch.Tensor:
        device = next(fn.net.parameters()).device
        feats = embed_all(fn.net, data.normalize(data.images_of_class(c).to(device))).cpu()
        return selector(feats, ipc, gen)

    return choose


def _forgetting(self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator) -> torch.Tensor:
    scores = fn.forgetting[data.class_indices(c)]
    return torch.sort(scores, descending=True, stable=True).indices[:ipc]


CORESETS = {
    "Random": (False, _random),
    "Herding": (True, _by_features(herding)),
    "K-Center": (True, _by_features(k_center_greedy)),
    "Forgetting": (True, _forgetting),
    "Whole": (False, _whole),
}

for _name, (_needs, _choose) in CORESETS.items():
    register_method(_name)(lambda dataset, ipc, _n=_name, _d=_needs, _c=_choose: Coreset(_n, _d, _c))
