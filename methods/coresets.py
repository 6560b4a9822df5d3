"""Coreset baselines of Table I: Random, Herding, K-Center greedy and Forgetting (docs/provenance.md).

Herding, K-Center and Forgetting need a network trained on the whole training set; one training run per
(dataset, network, seed, epochs) gives both the embeddings and the forgetting counts. It is cached in the
process and on disk under the results folder, so the three methods, both IPCs, a re-run and other
processes of the same matrix reuse it.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import nn
from tqdm.auto import trange

from bench.core.files import (
    UnsafeFileError,
    atomic_save_tensors,
    clean_leftovers,
    file_lock,
    load_tensor_file,
)
from bench.core.version import CODE_VERSION
from bench.data.loaders import ImageDataset
from bench.learning.networks import NetworkBuilder
from bench.learning.provenance import published_protocol
from bench.learning.training import build_net, default_device, seeded, train_epoch
from methods.base import (
    Budget,
    DistilledSet,
    Method,
    MethodSpec,
    NetFactory,
    register_method,
)
from methods.sampling import embed_all

Selector = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]  # (class features, ipc, gen) -> indices


def euclidean_to(target: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Distance of every row of ``features`` to ``target``."""
    return (target - features).norm(dim=1)


def nearest_mean(features: torch.Tensor, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """The k samples nearest the class mean, nearest first: the rule behind Table I's Herding rows, which a
    herding correction does not reproduce beyond the first pick (docs/provenance.md, "Coresets as published")."""
    return euclidean_to(features.mean(0), features).argsort(stable=True)[:k]


def herding(
    features: torch.Tensor,
    k: int,
    gen: torch.Generator | None = None,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = euclidean_to,
) -> torch.Tensor:
    """Greedy herding: at step t pick the unselected x minimising distance(t*mu - s, x) (IDC's argmin rule, and
    the pseudocode DC's author posted); registered as ``Herding-greedy``. ``distance`` is the pseudocode's
    unspecified one; Euclidean is IDC's."""
    mu = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool)
    for t in range(1, min(k, len(features)) + 1):
        dist = distance(t * mu - running, features)
        dist[~available] = float("inf")
        pick = int(dist.argmin())
        chosen.append(pick)
        available[pick] = False
        running += features[pick]
    return torch.tensor(chosen, dtype=torch.long)


def k_center_greedy(features: torch.Tensor, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """Start from the point nearest the class mean; repeatedly add the point farthest from the selected set.

    The mean-nearest start is the rule DC's authors describe for their K-Center baseline, and the only one
    consistent with its published IPC-1 numbers equalling Herding's (docs/provenance.md).
    """
    first = int(nearest_mean(features, 1)[0])  # Herding's first pick
    chosen = [first]
    min_dist = euclidean_to(features[first], features)
    for _ in range(min(k, len(features)) - 1):
        pick = int(min_dist.argmax())
        chosen.append(pick)
        min_dist = torch.minimum(min_dist, euclidean_to(features[pick], features))
    return torch.tensor(chosen, dtype=torch.long)


@dataclass
class FeatureNetwork:
    """A network trained on the full training set, with per-sample forgetting counts from that training."""

    net: nn.Module
    forgetting: torch.Tensor  # forgetting events per training sample; never-learned samples are +inf
    _features: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def class_features(self, data: ImageDataset, c: int) -> torch.Tensor:
        """Penultimate embeddings of class ``c``'s training images, computed once and reused by every selector."""
        if c not in self._features:
            device = next(self.net.parameters()).device
            self._features[c] = embed_all(self.net, data.normalize(data.images_of_class(c).to(device))).cpu()
        return self._features[c]


_FEATURE_CACHE: dict[Any, FeatureNetwork] = {}
FEATURE_NET_DIR = ".feature_nets"


DEFAULT_FEATURE_EPOCHS = 30  # epochs of a feature network when the matrix sets no feature_epochs
# How every feature network is trained; part of its file's name, so a changed recipe never reuses an old file.
FEATURE_RECIPE = {
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "batch": 256,
    "augmentation": "none",
    "file": "state_dict+forgetting+features",
}


def feature_network_file(cache_dir: Path, data: ImageDataset, arch_key: Any, seed: int, epochs: int) -> Path:
    """One file per (dataset, network, seed, epochs); the name carries a digest of the training labels, the
    recipe and the code version (a change that alters results retrains the network too)."""
    identity = (data.name, tuple(data.train_images.shape), arch_key, sorted(FEATURE_RECIPE.items()), CODE_VERSION)
    digest = hashlib.sha256(repr(identity).encode() + data.train_labels.numpy().tobytes()).hexdigest()[:12]
    return cache_dir / FEATURE_NET_DIR / f"{data.name}_s{seed}_e{epochs}_{digest}.pt"


def train_feature_network(
    data: ImageDataset, make_net: NetFactory, seed: int, epochs: int, cache_dir: Path | None = None
) -> FeatureNetwork:
    """Train on all real data (SGD 0.01, momentum 0.9, wd 5e-4, batch 256, no augmentation), once.

    Kept in the process and, with ``cache_dir``, on disk (written atomically under a file lock), so a re-run
    or a second process of the same matrix reuses the network instead of training it again.
    """
    arch_key = make_net.cache_key if isinstance(make_net, NetworkBuilder) else None
    key = (data.name, len(data.train_images), arch_key, seed, epochs) if arch_key is not None else None
    if key in _FEATURE_CACHE:  # a factory without a cache key (a test's lambda) is never matched: ids are reused
        return _FEATURE_CACHE[key]
    path = feature_network_file(cache_dir, data, arch_key, seed, epochs) if cache_dir and arch_key else None
    with file_lock(path.with_suffix(".lock")) if path is not None else nullcontext():
        if path is not None:
            clean_leftovers(path.parent, path.name)  # a killed save's temporary file (this lock guards the name)
        usable = path is not None and path.is_file() and not path.is_symlink()  # a link is replaced, never read
        result = _load_feature_network(path, make_net, data) if usable else None
        if result is None:
            result = _train_feature_network(data, make_net, seed, epochs)
            if path is not None:  # with every class's embedding, so other processes need not embed again
                features = [result.class_features(data, c) for c in range(data.num_classes)]
                atomic_save_tensors(
                    {"state_dict": result.net.state_dict(), "forgetting": result.forgetting, "features": features}, path
                )
    if key is not None:
        _FEATURE_CACHE[key] = result
    return result


def _load_feature_network(path: Path, make_net: NetFactory, data: ImageDataset) -> FeatureNetwork | None:
    """The cached network, or None (and a note) when the file cannot be trusted to be this dataset's network:
    unreadable, from another network shape, or counts that do not match the data; it is then trained again."""
    try:
        state = load_tensor_file(path)
        net = make_net().to(default_device())
        net.load_state_dict(state["state_dict"])
        forgetting, features = state["forgetting"], list(state.get("features", []))
        if not isinstance(forgetting, torch.Tensor) or forgetting.shape != (len(data.train_images),):
            raise ValueError(
                f"forgetting counts for {getattr(forgetting, 'shape', '?')} samples, not {len(data.train_images)}"
            )
        if features and (
            len(features) != data.num_classes
            or any(
                not isinstance(f, torch.Tensor) or f.ndim != 2 or len(f) != len(data.class_indices(c))
                for c, f in enumerate(features)
            )
        ):
            raise ValueError("stored embeddings do not match the classes' image counts")
    except (UnsafeFileError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
        print(f"{path.name}: cached feature network not usable ({str(err).splitlines()[0][:160]}); training it again")
        return None
    return FeatureNetwork(net.eval(), forgetting, dict(enumerate(features)))


def _train_feature_network(data: ImageDataset, make_net: NetFactory, seed: int, epochs: int) -> FeatureNetwork:
    device = default_device()
    net = build_net(make_net, seed, device)
    recipe = FEATURE_RECIPE
    opt = torch.optim.SGD(
        net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"], weight_decay=recipe["weight_decay"]
    )
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
    for _ in trange(epochs, desc=f"feature network ({data.name})", leave=False, disable=None):
        train_epoch(
            net,
            opt,
            data.train_images,
            labels,
            batch_size=recipe["batch"],
            to_input=data.normalize,
            gen=gen,
            on_batch=track,
        )
    events[~learned] = float("inf")  # never learned; how many events that counts for is the selection rule's choice
    return FeatureNetwork(net.eval(), events)


class Coreset(Method):
    """Select ``ipc`` real images per class; the images are stored unchanged (factor 1)."""

    def __init__(self, name: str, spec: CoresetSpec) -> None:
        self.name = name
        self.selection_rule = spec.selection_rule  # rule choices that decide the set (part of a cell's fingerprint)
        self.eval_protocol = published_protocol(
            spec.table_row
        )  # DC's evaluation: the coreset rows come from DC's paper
        self.needs_network = spec.needs_network
        self.feature_recipe = dict(FEATURE_RECIPE) if spec.needs_network else None
        self._choose = spec.choose

    def feature_network(self, budget: Budget, seed: int) -> tuple[int, int] | None:
        """(seed, epochs) of the feature network this selection needs; None for rules that need none."""
        if not self.needs_network:
            return None
        epochs = (
            DEFAULT_FEATURE_EPOCHS if budget.feature_epochs is None else budget.feature_epochs
        )  # 0: the untrained network
        return (seed if budget.feature_seed is None else budget.feature_seed), epochs

    def preparation(self, budget: Budget, seed: int) -> tuple[Any, ...] | None:
        settings = self.feature_network(budget, seed)
        return None if settings is None else ("feature network", "seed", settings[0], "epochs", settings[1])

    def prepare(self, data: ImageDataset, make_net: NetFactory, budget: Budget, seed: int, cache_dir: Path) -> None:
        settings = self.feature_network(budget, seed)
        if settings is not None:
            train_feature_network(data, make_net, *settings, cache_dir)

    def distill(
        self, data: ImageDataset, ipc: int, make_net: NetFactory, budget: Budget, seed: int, **hooks: Any
    ) -> DistilledSet:
        start = time.perf_counter()
        settings = self.feature_network(budget, seed)
        feature_net = (
            None if settings is None else train_feature_network(data, make_net, *settings, hooks.get("cache_dir"))
        )
        gen = seeded(seed)
        picks = [
            data.class_indices(c)[self._choose(self, data, c, ipc, feature_net, gen)] for c in range(data.num_classes)
        ]
        idx = torch.cat(picks)
        seconds = time.perf_counter() - start
        return DistilledSet(
            data.train_images[idx].clone(),
            data.train_labels[idx].clone(),
            1,
            [],
            {"selection": seconds},
            {"method": self.name, "indices": idx.tolist()},
        )


def _random(
    self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator
) -> torch.Tensor:
    return torch.randperm(len(data.class_indices(c)), generator=gen)[:ipc]


def _whole(
    self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator
) -> torch.Tensor:
    return torch.arange(len(data.class_indices(c)))  # the whole class: Table II's upper bound


def _by_features(selector: Selector):
    def choose(
        self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator
    ) -> torch.Tensor:
        return selector(fn.class_features(data, c), ipc, gen)

    return choose


# Events credited to samples the feature network never classified correctly. DeepCore counts 0, Toneva et al.
# infinitely many; 0 is what reproduces DC's published Forgetting row (docs/provenance.md), +inf picks
# near-chance sets (MNIST IPC 1: 11.5 against the published 35.5).
NEVER_LEARNED_EVENTS = 0.0


def _forgetting(
    self: Coreset, data: ImageDataset, c: int, ipc: int, fn: FeatureNetwork | None, gen: torch.Generator
) -> torch.Tensor:
    scores = fn.forgetting[data.class_indices(c)].clone()
    scores[torch.isinf(scores)] = NEVER_LEARNED_EVENTS
    return torch.sort(scores, descending=True, stable=True).indices[:ipc]


class CoresetSpec(NamedTuple):
    """One registered coreset: whether it needs a feature network, its chooser, the rule choices that decide
    its set (fingerprinted), and the Table I row whose published evaluation it takes."""

    needs_network: bool
    choose: Callable[..., torch.Tensor]
    selection_rule: dict[str, Any] | None
    table_row: str


CORESETS = {
    "Random": CoresetSpec(False, _random, None, "Random"),
    "Herding": CoresetSpec(True, _by_features(nearest_mean), {"herding_rule": "nearest-mean"}, "Herding"),
    "Herding-greedy": CoresetSpec(True, _by_features(herding), {"herding_rule": "greedy"}, "Herding"),
    "K-Center": CoresetSpec(True, _by_features(k_center_greedy), None, "K-Center"),
    "Forgetting": CoresetSpec(True, _forgetting, {"never_learned_events": NEVER_LEARNED_EVENTS}, "Forgetting"),
    "Whole": CoresetSpec(False, _whole, None, "Whole"),
}

DESCRIPTIONS = {
    "Random": "real images drawn at random per class",
    "Herding": "the real images nearest the class mean in a trained network's features (the rule Table I's rows match)",
    "Herding-greedy": "greedy herding: each pick brings the running mean closest to the class mean (Welling 2009)",
    "K-Center": "greedy k-center in a trained network's features, starting from Herding's first pick",
    "Forgetting": "the images forgotten least often while a network trains (Toneva et al. 2019)",
    "Whole": "the whole training set (the upper bound of Table II)",
}

for _name, _spec in CORESETS.items():
    register_method(
        MethodSpec(
            _name,
            "coreset",
            lambda dataset, ipc, config=None, _n=_name, _s=_spec: Coreset(_n, _s),
            published_protocol(_spec.table_row),
            description=DESCRIPTIONS.get(_name, ""),
            uses_feature_network=_spec.needs_network,
        )
    )
