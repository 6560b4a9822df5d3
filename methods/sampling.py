"""Real-batch samplers: which real images of a class are matched at each step.

``random``: per-class batches drawn without replacement from a permutation (IDC's sampler).
``representative``: DREAM's rule (docs/official-code.md §7.5, ``query_match``): every ``interval`` steps, embed every image of
the class with the current matching network, K-Means into ``n_clusters`` centres, and take the
``samples_per_cluster`` nearest images of each centre.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from fast_pytorch_kmeans import KMeans
from torch import nn

from bench.data import ImageDataset
from bench.training import inference_batch


def seeded_kmeans(features: torch.Tensor, n_clusters: int, seed: int) -> torch.Tensor:
    """Centroids of fast-pytorch-kmeans (Lloyd, random init) run under an explicit seed."""
    n_clusters = min(n_clusters, features.shape[0])
    with torch.random.fork_rng(devices=[features.device] if features.is_cuda else []):
        torch.manual_seed(seed)
        km = KMeans(n_clusters=n_clusters, mode="euclidean", max_iter=100, tol=1e-4)
        km.fit(features)
    return km.centroids


def nearest_to_centres(features: torch.Tensor, centres: torch.Tensor, per_centre: int = 1) -> torch.Tensor:
    """Indices of the ``per_centre`` nearest samples of each centre (duplicates kept, as in DREAM)."""
    dist = torch.cdist(centres, features)
    k = min(per_centre, features.shape[0])
    return dist.topk(k, dim=1, largest=False).indices.reshape(-1)


@torch.no_grad()
def embed_all(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    batch = inference_batch(net)
    return torch.cat([net.embed(images[i : i + batch]) for i in range(0, len(images), batch)])


def cluster_select(
    net: nn.Module, images: torch.Tensor, n_clusters: int, per_centre: int, seed: int
) -> torch.Tensor:
    """Indices of the images nearest to the K-Means centres of their embeddings."""
    feats = embed_all(net, images)
    return nearest_to_centres(feats, seeded_kmeans(feats, n_clusters, seed), per_centre)


def linear_mmd(net: nn.Module, selected: torch.Tensor, whole: torch.Tensor) -> float:
    """Squared distance of mean embeddings (linear-kernel MMD), the paper's Fig. 2b diagnostic."""
    return float((embed_all(net, selected).mean(0) - embed_all(net, whole).mean(0)).pow(2).sum())


@dataclass
class RandomSampler:
    """Per-class batches without replacement, reshuffled when a class is exhausted."""

    batch: int
    seconds: float = 0.0
    _perm: dict[int, torch.Tensor] = field(default_factory=dict)
    _pos: dict[int, int] = field(default_factory=dict)

    def start_network(self, net: nn.Module, data: ImageDataset, gen: torch.Generator) -> None:
        self._gen = gen
        self._perm.clear()
        self._pos.clear()

    def refresh(self, step: int, net: nn.Module, data: ImageDataset, to_input, images: torch.Tensor) -> None:
        pass

    def batch_indices(self, c: int, data: ImageDataset) -> torch.Tensor:
        idx = data.class_indices(c)
        n = min(self.batch, len(idx))
        if c not in self._perm or self._pos[c] + n > len(idx):
            self._perm[c] = idx[torch.randperm(len(idx), generator=self._gen)]
            self._pos[c] = 0
        out = self._perm[c][self._pos[c] : self._pos[c] + n]
        self._pos[c] += n
        return out


@dataclass
class RepresentativeSampler:
    """DREAM's representative matching: cluster-nearest real images, refreshed every ``interval`` steps."""

    n_clusters: int
    samples_per_cluster: int = 1
    interval: int = 10
    normalize_features: bool = False   # official code clusters unnormalised [0,1] images (docs/official-code.md §13.3)
    seconds: float = 0.0
    _chosen: dict[int, torch.Tensor] = field(default_factory=dict)

    def start_network(self, net: nn.Module, data: ImageDataset, gen: torch.Generator) -> None:
        self._seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
        self._chosen.clear()

    def refresh(self, step: int, net: nn.Module, data: ImageDataset, to_input, images: torch.Tensor) -> None:
        """``images``: the training images already on the network's device (no per-refresh copy)."""
        if step % self.interval != 0:
            return
        start = time.perf_counter()
        for c in range(data.num_classes):
            idx = data.class_indices(c)
            class_images = images[idx.to(images.device)]
            if self.normalize_features:
                class_images = to_input(class_images)
            picks = cluster_select(net, class_images, self.n_clusters, self.samples_per_cluster, self._seed + c * 7919 + step)
            self._chosen[c] = idx[picks.cpu()]
        self.seconds += time.perf_counter() - start

    def batch_indices(self, c: int, data: ImageDataset) -> torch.Tensor:
        return self._chosen[c]
