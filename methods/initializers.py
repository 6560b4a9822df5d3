"""How the synthetic set starts: noise, real images, IDC 'mix' tiling, or DREAM's cluster centres.

Every initialiser returns ``ipc`` stored images per class, class-major, in [0, 1] pixel space.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bench.data.loaders import ImageDataset
from methods.representation import tile
from methods.sampling import cluster_select

Prepare = Callable[[torch.Tensor], torch.Tensor] | None
# (data, class, count, net, generator, prepare) -> indices of real images of that class
Picker = Callable[[ImageDataset, int, int, nn.Module, torch.Generator, Prepare], torch.Tensor]


def _first(
    data: ImageDataset, c: int, n: int, net: nn.Module, gen: torch.Generator, prepare: Prepare = None
) -> torch.Tensor:
    return data.class_indices(c)[:n]


def _random(
    data: ImageDataset, c: int, n: int, net: nn.Module, gen: torch.Generator, prepare: Prepare = None
) -> torch.Tensor:
    idx = data.class_indices(c)
    return idx[torch.randperm(len(idx), generator=gen)[:n]]


def _cluster(
    data: ImageDataset, c: int, n: int, net: nn.Module, gen: torch.Generator, prepare: Prepare = None
) -> torch.Tensor:
    idx = data.class_indices(c)
    device = next(net.parameters()).device
    seed = int(torch.randint(2**31 - 1, (1,), generator=gen))
    images = data.train_images[idx].to(device)
    return idx[cluster_select(net, prepare(images) if prepare else images, n, 1, seed).cpu()]


PICKERS: dict[str, Picker] = {"real_first": _first, "real_random": _random, "cluster": _cluster}
INITIALIZERS = sorted([*PICKERS, "noise", "mix"])


def initial_images(
    name: str,
    data: ImageDataset,
    ipc: int,
    factor: int,
    net: nn.Module,
    gen: torch.Generator,
    prepare: Prepare = None,
) -> torch.Tensor:
    """Stored images for every class. With factor f > 1 the picks are tiled f x f (IDC 'mix').
    ``prepare`` maps images before cluster-centre selection (normalisation when ``cluster_normalized``)."""
    if name == "noise":
        # N(0, 1) in normalised space, as DC's default, expressed in pixel space.
        shape = (data.num_classes * ipc, data.channels, *data.image_size)
        noise = torch.randn(shape, generator=gen)
        mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        std = torch.tensor(data.std).view(1, -1, 1, 1)
        return noise * std + mean
    picker_name = "real_first" if name == "mix" else name
    if picker_name not in PICKERS:
        raise ValueError(f"unknown initialiser {name!r}; allowed: {INITIALIZERS}")
    per_class = []
    for c in range(data.num_classes):
        picks = PICKERS[picker_name](data, c, ipc * factor**2, net, gen, prepare)
        if len(picks) < ipc * factor**2:  # tiny classes: cycle the picks
            picks = picks.repeat(ipc * factor**2 // len(picks) + 1)[: ipc * factor**2]
        per_class.append(tile(data.train_images[picks].cpu(), ipc, factor))
    return torch.cat(per_class)
