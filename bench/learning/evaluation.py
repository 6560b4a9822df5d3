"""Evaluation protocols: train a fresh network on a distilled set, report last-epoch test accuracy.

Protocol A (DC/DSA/DM, docs/official-code.md §10A) and protocol B (IDC/DREAM/DREAM+, docs/official-code.md §10B) are registered data;
``A-dc`` resolves to DC's own rule (augmented on digit datasets, else no augmentation and 300 epochs).
``load_external_set`` reads a set produced elsewhere (the official IDC/DREAM ``data.pt`` layout included);
``bench.cli.evaluate`` is its command.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Callable

import torch

from bench.core.files import load_tensor_file
from bench.core.registry import Registry
from bench.data.augment import DCAugment, DiffAugment
from bench.data.info import DATASET_INFO
from bench.data.loaders import ImageDataset
from bench.learning.networks import NetworkBuilder
from bench.learning.training import (
    LossHook,
    accuracy,
    build_net,
    default_device,
    derive_seed,
    seeded,
    train_epoch,
)


@dataclass(frozen=True)
class Protocol:
    """How a fresh network is trained on a distilled set (docs/provenance.md says which paper used which)."""

    name: str
    epochs: int
    batch_size: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "multistep"     # multistep: x0.2 at each milestone (B: 2E/3, 5E/6) | halfway: x0.1 after epoch E//2+1 (A)
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)
    augment: str = "dsa"            # dsa: the dataset's DSA strategy | dc: DC's own crop/scale/rotate | none
    aug_mode: str = "single"
    drop_cutout: bool = False       # B removes cutout because CutMix is on
    cutmix_p: float = 0.0
    validations: int = 1            # test-set checks at evenly spaced epochs (the last is the last epoch)
    strategy: str = ""              # DSA families; "" = the dataset's (no flip on digit sets, as DSA advises)


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")
SUMMARIES: dict[str, str] = {}   # one line per protocol, for captions and `dreambench ls protocols`


def register_protocol(protocol: Protocol, summary: str) -> Protocol:
    """Register an evaluation protocol with its one-line summary (the one place a protocol is added)."""
    SUMMARIES[protocol.name] = summary
    return PROTOCOLS.add(protocol.name, protocol)


register_protocol(Protocol("A", epochs=1000, batch_size=256, schedule="halfway", augment="dsa", aug_mode="single"),
                  "DSA augmentation, 1000 epochs, batch 256, lr x0.1 at half")
register_protocol(Protocol("A-dm", epochs=1000, batch_size=256, schedule="halfway", augment="dsa", aug_mode="single",
                           strategy="color_crop_cutout_flip_scale_rotate"),   # main_DM.py's default, flip everywhere
                  "as A but DSA with flip on every dataset (main_DM.py's default strategy)")
register_protocol(Protocol("A-dcaug", epochs=1000, batch_size=256, schedule="halfway", augment="dc"),
                  "DC's crop/scale/rotate augmentation, 1000 epochs, batch 256, lr x0.1 at half")
register_protocol(Protocol("A-noaug", epochs=300, batch_size=256, schedule="halfway", augment="none"),
                  "no augmentation, 300 epochs, batch 256, lr x0.1 at half")
register_protocol(Protocol("B", epochs=1000, batch_size=64, schedule="multistep", augment="dsa", aug_mode="composite",
                           drop_cutout=True, cutmix_p=0.5, validations=4),
                  "DSA (no cutout) + CutMix, 1000 epochs, batch 64, lr x0.2 at 2/3 and 5/6, 4 validations (best and "
                  "last logged)")
PER_DATASET = {"A-dc": "DC's rule: A-dcaug on MNIST, A-noaug elsewhere"}


def protocol_names() -> list[str]:
    """Every name a matrix may give ``eval_protocol``: the protocols and the per-dataset rules."""
    return [*PROTOCOLS.names(), *PER_DATASET]


def _digit_like(dataset: str) -> bool:
    return dataset in DATASET_INFO and DATASET_INFO.get(dataset).digit_like


def resolve_protocol(name: str, dataset: str, factor: int = 1) -> Protocol:
    """Look a protocol up by name; 'A-dc' is DC's per-dataset choice (``get_daparam``: augment MNIST only)."""
    if name == "A-dc":
        name = "A-dcaug" if _digit_like(dataset) else "A-noaug"
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; allowed: {', '.join(protocol_names())}")
    protocol = PROTOCOLS.get(name)
    if name == "B" and _digit_like(dataset) and factor > 1:
        protocol = replace(protocol, cutmix_p=0.0)   # IDC: MNIST with f > 1 uses no CutMix (docs/official-code.md 12)
    return protocol


def eval_strategy(protocol: Protocol, dataset: str) -> str:
    strategy = protocol.strategy or DATASET_INFO.get(dataset).dsa_strategy
    if protocol.drop_cutout:
        strategy = "_".join(f for f in strategy.split("_") if f != "cutout")
    return strategy


def make_augment(protocol: Protocol, dataset: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The per-batch training augmentation a protocol prescribes for ``dataset`` (None: no augmentation)."""
    if protocol.augment == "dsa":
        return DiffAugment(eval_strategy(protocol, dataset), protocol.aug_mode)
    if protocol.augment == "dc":
        return DCAugment()
    return None


def lr_at(protocol: Protocol, epoch: int) -> float:
    """The learning rate of ``epoch`` under the protocol's schedule (DC's halfway step, IDC's milestones)."""
    epochs = protocol.epochs
    if protocol.schedule == "halfway":
        return protocol.lr * (0.1 if epoch > epochs // 2 + 1 else 1.0)
    factor = 1.0
    for milestone in (int(epochs * m + 1e-9) for m in protocol.milestones):
        if epoch >= milestone:
            factor *= 0.2
    return protocol.lr * factor


def _sgd(net: torch.nn.Module, protocol: Protocol, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)


def fit(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, data: ImageDataset, protocol: Protocol,
        gen: torch.Generator, loss_fn: LossHook | None = None, after_epoch: Callable[[int], None] | None = None) -> None:
    """Train ``net`` on a set (pixel space) for the protocol's epochs: its schedule, augmentation and CutMix.
    The one training loop of evaluation and continual learning; ``after_epoch(k)`` runs after epoch k."""
    aug = make_augment(protocol, data.name)
    device = next(net.parameters()).device
    opt = _sgd(net, protocol, protocol.lr)
    images, labels = images.to(device), labels.to(device)
    for epoch in range(protocol.epochs):
        lr = lr_at(protocol, epoch)
        if protocol.schedule == "halfway" and epoch == protocol.epochs // 2 + 2:
            opt = _sgd(net, protocol, lr)   # DC rebuilds the optimiser at the decay, which resets momentum
        for group in opt.param_groups:
            group["lr"] = lr
        train_epoch(net, opt, images, labels, batch_size=protocol.batch_size, to_input=data.normalize, gen=gen,
                    aug=aug, cutmix_p=protocol.cutmix_p, loss_fn=loss_fn)
        if after_epoch is not None:
            after_epoch(epoch + 1)


def network_factory(arch: str, data: ImageDataset) -> NetworkBuilder:
    """A constructor for ``arch`` sized for ``data``. IDC's "ResNet-10" is the CIFAR layout (widths 32-256)
    on CIFAR and the wide one (64-512) elsewhere (docs/official-code.md §2.2), so the variant follows the dataset."""
    kwargs = {"variant": "cifar" if data.name.startswith("cifar") else "wide"} if arch.startswith("ResNet") else {}
    return NetworkBuilder(arch, data.channels, data.num_classes, data.image_size, tuple(kwargs.items()))


@dataclass(frozen=True)
class RunAccuracy:
    """One trained network: last-epoch accuracy, and the best of the protocol's validation points."""

    last: float
    best: float


def validation_epochs(protocol: Protocol) -> set[int]:
    """Epoch counts after which the test set is checked (evenly spaced, always including the last)."""
    n = max(protocol.validations, 1)
    return {max(1, round(protocol.epochs * k / n)) for k in range(1, n + 1)}


def train_and_test(
    images: torch.Tensor, labels: torch.Tensor, data: ImageDataset, arch: str, protocol: Protocol, seed: int,
) -> RunAccuracy:
    """Train a fresh ``arch`` on (images, labels) in pixel space; top-1 test accuracy (%) at the last epoch
    and the best over the protocol's validation points (the number IDC/DREAM logs as 'best')."""
    net = build_net(network_factory(arch, data), seed, default_device())
    checks = validation_epochs(protocol)
    seen: list[float] = []

    def validate(done: int) -> None:
        if done in checks and done < protocol.epochs:
            seen.append(accuracy(net, data.test_images, data.test_labels, data.normalize))

    fit(net, images, labels, data, protocol, seeded(seed), after_epoch=validate)
    last = accuracy(net, data.test_images, data.test_labels, data.normalize)
    return RunAccuracy(last, max([*seen, last]))


@dataclass
class EvalResult:
    """Accuracies of ``runs`` networks trained on one set: last epoch (the headline) and best-of-validation."""

    runs: list[RunAccuracy]

    @property
    def accuracies(self) -> list[float]:
        return [r.last for r in self.runs]

    @property
    def best(self) -> list[float]:
        return [r.best for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def evaluate_set(
    images: torch.Tensor, labels: torch.Tensor, data: ImageDataset, arch: str, protocol: Protocol, runs: int, seed: int,
) -> EvalResult:
    """``runs`` independently initialised networks on the same set (which must be finite and well-formed)."""
    check_set(images, labels, data)
    return EvalResult([train_and_test(images, labels, data, arch, protocol, derive_seed(seed, "evaluation network", r)) for r in range(runs)])


def load_external_set(path: str, data: ImageDataset | None = None, experiment: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Read a set produced elsewhere as (pixel-space images, labels, decode factor).

    Layouts: dreambench's dict (images/labels[/factor]); IDC/DREAM's ``[x, y]`` (stored images of their
    factor-2 runs); DC/DSA/DM's ``{'data': [[images, labels], ...], 'accs_all_exps': ...}``, one pair per
    experiment and images still normalised, so ``data`` (for its mean/std) is needed and ``experiment`` picks one.
    """
    obj = load_tensor_file(path)
    if isinstance(obj, dict) and {"images", "labels"} <= set(obj):
        images, labels, factor = obj["images"], obj["labels"], int(obj.get("factor", 1))
    elif isinstance(obj, dict) and isinstance(obj.get("data"), (list, tuple)) and obj["data"]:
        pairs = obj["data"]
        if not 0 <= experiment < len(pairs) or len(pairs[experiment]) != 2:
            raise ValueError(f"{path}: DC-style file with {len(pairs)} experiments; --experiment must be in [0, {len(pairs) - 1}]")
        if data is None:
            raise ValueError(f"{path}: DC-style images are normalised; the dataset is needed to undo it")
        images, labels, factor = data.denormalize(pairs[experiment][0].float()), pairs[experiment][1], 1
    elif isinstance(obj, (list, tuple)) and len(obj) == 2:
        # IDC/DREAM save the stored (undecoded) images; their published runs use factor 2
        images, labels, factor = obj[0], obj[1], 2
    else:
        raise ValueError(f"{path}: expected a dict with 'images' and 'labels', IDC/DREAM's [images, labels] pair, "
                         "or DC/DSA/DM's {'data': [[images, labels], ...]}")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"{path}: images and labels must be tensors")
    return images.float(), labels.long(), factor


def check_set(images: torch.Tensor, labels: torch.Tensor, data: ImageDataset, where: str = "set") -> None:
    """A set can train a network of ``data``: non-empty, finite, image shape and labels matching the dataset."""
    shape = tuple(data.train_images.shape[1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(f"{where}: images of shape {tuple(images.shape)}; {data.name} needs N x {' x '.join(map(str, shape))}")
    if len(images) == 0:
        raise ValueError(f"{where}: the set is empty")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{where}: {len(images)} images but labels of shape {tuple(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= data.num_classes:
        raise ValueError(f"{where}: labels must lie in [0, {data.num_classes - 1}], found {int(labels.min())}..{int(labels.max())}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{where}: images hold NaN or infinite values")
