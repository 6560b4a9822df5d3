"""Real-batch samplers: which real images of a class are matched at each step.

``random``: per-class batches drawn without replacement from a permutation (IDC's sampler).
``representative``: DREAM's rule (docs/official-code.md §7.5, ``query_match``): every ``interval`` steps, embed every
image of the class with the current matching network, K-Means into ``n_clusters`` centres, and take the
``samples_per_cluster`` nearest images of each centre. All classes are embedded in one pass and, on a GPU,
clustered by one batched K-Means (``batched_kmeans``: fast-pytorch-kmeans' algorithm and initial draws per
class), so a refresh costs a few large operations instead of a few per class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from fast_pytorch_kmeans import KMeans
from torch import nn

from bench.data.loaders import ImageDataset
from bench.learning.training import autocast_to, batch_dependent, inference_batch


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


def batched_kmeans(
    features: torch.Tensor,
    valid: torch.Tensor,
    n_clusters: int,
    seeds: Sequence[int],
    max_iter: int = 100,
    tol: float = 1e-4,
) -> torch.Tensor:
    """K-Means of G groups at once: ``features`` (G, N, D), zero-padded where ``valid`` (G, N) is False.

    Per group the algorithm of :func:`seeded_kmeans` (fast-pytorch-kmeans 0.2: centres start at ``n_clusters``
    points drawn with ``randint`` under the group's seed, Lloyd steps on the euclidean similarity, an empty
    cluster's centre becomes 0, a group stops once its centres move less than ``tol``), so the centres equal the
    per-group ones to float rounding. Own code because fast-pytorch-kmeans fits one group per call.
    Every group needs at least ``n_clusters`` valid points. Returns (G, n_clusters, D) centres.
    """
    groups, _, _ = features.shape
    sizes = valid.sum(1).tolist()
    if min(sizes) < n_clusters:
        raise ValueError(f"batched_kmeans: a group has {min(sizes)} points, fewer than n_clusters={n_clusters}")
    device = features.device
    draws = []
    for size, seed in zip(sizes, seeds):
        gen = torch.Generator(device=device).manual_seed(seed)
        draws.append(torch.randint(0, int(size), (n_clusters,), generator=gen, device=device))
    centres = torch.gather(features, 1, torch.stack(draws)[..., None].expand(-1, -1, features.shape[2]))
    squares = features.pow(2).sum(-1)[..., :, None]
    cluster_ids = torch.arange(n_clusters, device=device)[None, :, None]
    result = centres.clone()
    running = torch.arange(groups, device=device)  # groups still iterating; finished ones leave the batch
    for _ in range(max_iter):
        sim = 2 * features @ centres.transpose(1, 2) - squares - centres.pow(2).sum(-1)[..., None, :]
        closest = sim.max(dim=-1)[1]
        members = ((closest[:, None, :] == cluster_ids) & valid[:, None, :]).to(features.dtype)
        centres = torch.nan_to_num_(members @ features / members.sum(-1)[..., :, None])
        done = (centres - result[running]).pow(2).sum((1, 2)) <= tol
        result[running] = centres
        if bool(done.any()):
            keep = ~done
            running, features, valid, squares, centres = (
                running[keep],
                features[keep],
                valid[keep],
                squares[keep],
                centres[keep],
            )
            if len(running) == 0:
                break
    return result


def padded_groups(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack groups of different sizes into (G, N_max, D) with zero rows, and the (G, N_max) mask of real rows."""
    longest = max(len(f) for f in features)
    stacked = features[0].new_zeros(len(features), longest, features[0].shape[1])
    valid = torch.zeros(len(features), longest, dtype=torch.bool, device=features[0].device)
    for g, f in enumerate(features):
        stacked[g, : len(f)] = f
        valid[g, : len(f)] = True
    return stacked, valid


def batched_cluster_picks(
    features: Sequence[torch.Tensor],
    n_clusters: int,
    per_centre: int,
    seeds: Sequence[int],
    batched: bool | None = None,
) -> list[torch.Tensor]:
    """Per group, the indices (into that group) of the ``per_centre`` points nearest each K-Means centre:
    :func:`nearest_to_centres` of :func:`seeded_kmeans`, all groups at once on a GPU (where per-group calls
    cost launches and syncs). On a CPU, and for groups smaller than ``n_clusters`` or ``per_centre`` (tiny
    classes, whose nearest-k is capped at their size), one group at
    a time: there the batched form measured slower (MNIST-sized classes, 1 thread: 9.7 s against 7.5 s).
    ``batched`` forces either form (tests)."""
    batched = features[0].device.type != "cpu" if batched is None else batched
    if not batched or min(len(f) for f in features) < max(n_clusters, per_centre):
        return [nearest_to_centres(f, seeded_kmeans(f, n_clusters, s), per_centre) for f, s in zip(features, seeds)]
    stacked, valid = padded_groups(features)
    centres = batched_kmeans(stacked, valid, n_clusters, seeds)
    dist = torch.cdist(centres, stacked).masked_fill_(~valid[:, None, :], float("inf"))
    k = min(per_centre, min(len(f) for f in features))
    picks = dist.topk(k, dim=2, largest=False).indices.reshape(len(features), -1)
    return list(picks.unbind(0))


@torch.no_grad()
def embed_all(net: nn.Module, images: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Embeddings of ``images`` in inference-sized batches; float32 even when the passes run under autocast."""
    batch = inference_batch(net)
    with autocast_to(images.device, autocast_dtype):
        return torch.cat([net.embed(images[i : i + batch]).float() for i in range(0, len(images), batch)])


def cluster_select(net: nn.Module, images: torch.Tensor, n_clusters: int, per_centre: int, seed: int) -> torch.Tensor:
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
    embed_seconds: float = 0.0  # samplers share one timing interface; this one never embeds
    _perm: dict[int, torch.Tensor] = field(default_factory=dict)
    _pos: dict[int, int] = field(default_factory=dict)

    def start_network(self, net: nn.Module, data: ImageDataset, gen: torch.Generator) -> None:
        self._gen = gen
        self._perm.clear()
        self._pos.clear()

    def refresh(self, step: int, net: nn.Module, data: ImageDataset, to_input, images: torch.Tensor) -> None:
        pass

    def batch_size(self, c: int, data: ImageDataset) -> int:
        """Real images matched per step for class ``c`` (known before drawing them)."""
        return min(self.batch, len(data.class_indices(c)))

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
    normalize_features: bool = False  # official code clusters unnormalised [0,1] images (docs/official-code.md §13.3)
    autocast_dtype: torch.dtype | None = (
        None  # opt-in bf16: the embedding passes under autocast (K-Means stays float32)
    )
    seconds: float = 0.0
    embed_seconds: float = 0.0  # the part of ``seconds`` spent embedding (kept only where the timing is exact)
    sync: Callable[[], None] | None = None  # waits for the device before each time reading (benchmarks)
    _chosen: dict[int, torch.Tensor] = field(default_factory=dict)

    def start_network(self, net: nn.Module, data: ImageDataset, gen: torch.Generator) -> None:
        self._seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
        self._chosen.clear()

    def refresh(self, step: int, net: nn.Module, data: ImageDataset, to_input, images: torch.Tensor) -> None:
        """``images``: the training images already on the network's device (no per-refresh copy)."""
        if step % self.interval != 0:
            return
        if self.sync is not None:
            self.sync()
        start = time.perf_counter()
        prepare = to_input if self.normalize_features else (lambda x: x)
        groups = [data.class_indices(c) for c in range(data.num_classes)]
        if batch_dependent(net):  # outputs depend on the batch (batch norm in training mode): one class per pass
            features = [embed_all(net, prepare(images[idx.to(images.device)]), self.autocast_dtype) for idx in groups]
        else:  # one pass over every image; a sample's embedding does not depend on its batch-mates
            everything = embed_all(net, prepare(images), self.autocast_dtype)
            features = [everything[idx.to(images.device)] for idx in groups]
        if self.sync is not None:
            self.sync()
        if self.sync is not None or images.device.type == "cpu":  # on a GPU without syncs the wait lands in K-Means
            self.embed_seconds += time.perf_counter() - start
        seeds = [self._seed + c * 7919 + step for c in range(data.num_classes)]
        picks = batched_cluster_picks(features, self.n_clusters, self.samples_per_cluster, seeds)
        for c, (idx, chosen) in enumerate(zip(groups, picks)):
            self._chosen[c] = idx[chosen.cpu()]
        if self.sync is not None:
            self.sync()
        self.seconds += time.perf_counter() - start

    def batch_size(self, c: int, data: ImageDataset) -> int:
        return len(self._chosen[c])

    def batch_indices(self, c: int, data: ImageDataset) -> torch.Tensor:
        return self._chosen[c]
