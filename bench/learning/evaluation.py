"""Evaluation protocols: train a fresh network on a distilled set, report last-epoch test accuracy.

Protocol A (DC/DSA/DM, docs/official-code.md §10A) and protocol B (IDC/DREAM/DREAM+, docs/official-code.md §10B) are
registered data;
``A-dc`` resolves to DC's own rule (augmented on digit datasets, else no augmentation and 300 epochs).
``load_external_set`` reads a set produced elsewhere (the official IDC/DREAM ``data.pt`` layout included);
:func:`evaluate_images` evaluates a set given as tensors (from a notebook, say); ``bench.cli.evaluate`` is the command
for both. A set is bounded (:data:`MAX_SET_IMAGES` images, :data:`MAX_SET_BYTES` of float32 pixels) and its labels
must be integers: anything else is one ValueError line, before any training.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from bench.core.files import RefusedFileError, check_regular_file, load_tensor_file
from bench.core.host_memory import keeping_freed_memory
from bench.core.registry import Registry
from bench.data.augment import DCAugment, DiffAugment
from bench.data.info import DATASET_INFO
from bench.data.loaders import ImageDataset, load_dataset
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
    schedule: str = "multistep"  # multistep: x0.2 at each milestone (B: 2E/3, 5E/6) | halfway: x0.1 after E//2+1 (A)
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)
    augment: str = "dsa"  # dsa: the dataset's DSA strategy | dc: DC's own crop/scale/rotate | none
    aug_mode: str = "single"
    drop_cutout: bool = False  # B removes cutout because CutMix is on
    cutmix_p: float = 0.0
    validations: int = 1  # test-set checks at evenly spaced epochs (the last is the last epoch)
    strategy: str = ""  # DSA families; "" = the dataset's (no flip on digit sets, as DSA advises)


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")
SUMMARIES: dict[str, str] = {}  # one line per protocol, for captions and `dreambench ls protocols`


def register_protocol(protocol: Protocol, summary: str) -> Protocol:
    """Register an evaluation protocol with its one-line summary (the one place a protocol is added)."""
    SUMMARIES[protocol.name] = summary
    return PROTOCOLS.add(protocol.name, protocol)


register_protocol(
    Protocol("A", epochs=1000, batch_size=256, schedule="halfway", augment="dsa", aug_mode="single"),
    "DSA augmentation, 1000 epochs, batch 256, lr x0.1 at half",
)
register_protocol(
    Protocol(
        "A-dm",
        epochs=1000,
        batch_size=256,
        schedule="halfway",
        augment="dsa",
        aug_mode="single",
        strategy="color_crop_cutout_flip_scale_rotate",
    ),  # main_DM.py's default, flip everywhere
    "as A but DSA with flip on every dataset (main_DM.py's default strategy)",
)
register_protocol(
    Protocol("A-dcaug", epochs=1000, batch_size=256, schedule="halfway", augment="dc"),
    "DC's crop/scale/rotate augmentation, 1000 epochs, batch 256, lr x0.1 at half",
)
register_protocol(
    Protocol("A-noaug", epochs=300, batch_size=256, schedule="halfway", augment="none"),
    "no augmentation, 300 epochs, batch 256, lr x0.1 at half",
)
register_protocol(
    Protocol(
        "B",
        epochs=1000,
        batch_size=64,
        schedule="multistep",
        augment="dsa",
        aug_mode="composite",
        drop_cutout=True,
        cutmix_p=0.5,
        validations=4,
    ),
    "DSA (no cutout) + CutMix, 1000 epochs, batch 64, lr x0.2 at 2/3 and 5/6, 4 validations (best and last logged)",
)
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
        protocol = replace(protocol, cutmix_p=0.0)  # IDC: MNIST with f > 1 uses no CutMix (docs/official-code.md 12)
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


def fit(
    net: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    data: ImageDataset,
    protocol: Protocol,
    gen: torch.Generator,
    loss_fn: LossHook | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> None:
    """Train ``net`` on a set (pixel space) for the protocol's epochs: its schedule, augmentation and CutMix.
    The one training loop of evaluation and continual learning; ``after_epoch(k)`` runs after epoch k."""
    aug = make_augment(protocol, data.name)
    device = next(net.parameters()).device
    opt = _sgd(net, protocol, protocol.lr)
    images, labels = images.to(device), labels.to(device)
    for epoch in range(protocol.epochs):
        lr = lr_at(protocol, epoch)
        if protocol.schedule == "halfway" and epoch == protocol.epochs // 2 + 2:
            opt = _sgd(net, protocol, lr)  # DC rebuilds the optimiser at the decay, which resets momentum
        for group in opt.param_groups:
            group["lr"] = lr
        train_epoch(
            net,
            opt,
            images,
            labels,
            batch_size=protocol.batch_size,
            to_input=data.normalize,
            gen=gen,
            aug=aug,
            cutmix_p=protocol.cutmix_p,
            loss_fn=loss_fn,
        )
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
    images: torch.Tensor,
    labels: torch.Tensor,
    data: ImageDataset,
    arch: str,
    protocol: Protocol,
    seed: int,
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
    images: torch.Tensor,
    labels: torch.Tensor,
    data: ImageDataset,
    arch: str,
    protocol: Protocol,
    runs: int,
    seed: int,
) -> EvalResult:
    """``runs`` independently initialised networks on the same set (which must be finite and well-formed)."""
    check_set(images, labels, data)
    return EvalResult(
        [
            train_and_test(images, labels, data, arch, protocol, derive_seed(seed, "evaluation network", r))
            for r in range(runs)
        ]
    )


def _whole_number(value: Any, what: str, low: int, high: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} = {value!r:.40}; allowed: an integer in [{low}, {high}]")
    return value


def evaluate_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    dataset: str | ImageDataset,
    arch: str = "ConvNet-3",
    protocol: str | Protocol = "B",
    runs: int = 5,
    seed: int = 0,
    data_root: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
) -> EvalResult:
    """Evaluate a set given as tensors: train ``runs`` fresh ``arch`` networks on it under an evaluation protocol
    and test each on the dataset's test split (the accuracies ``dreambench evaluate`` prints).

    ``images``: N x C x H x W in [0, 1] pixel space, the dataset's channels and size (decode factorised sets
    first); ``labels``: N class indices (integers; an integral float tensor is accepted). ``dataset``: a
    dataset name (loaded from ``data_root``, else ``$DREAMBENCH_DATA``, else ``./data``) or a loaded
    ImageDataset. ``protocol``: a name of :func:`protocol_names` (``'A-dc'`` resolves for the dataset) or a
    Protocol; ``epochs`` replaces its epoch count. Bad input (shapes, labels, sizes, names, counts) raises one
    ValueError / KeyError line before any training. Returns an :class:`EvalResult` (``.accuracies`` last
    epoch, ``.best``, ``.mean``, ``.std``, one entry per run).

    Example, in a notebook::

        from bench.learning.evaluation import evaluate_images
        result = evaluate_images(images, labels, "cifar10", arch="ConvNet-3", protocol="B", runs=3)
        print(f"{result.mean:.2f} +- {result.std:.2f} (n = {len(result.runs)} runs)")
    """
    runs = _whole_number(runs, "runs", 1, 10_000)
    seed = _whole_number(seed, "seed", 0)
    if epochs is not None:
        epochs = _whole_number(epochs, "epochs", 1, 1_000_000)
    data = dataset if isinstance(dataset, ImageDataset) else load_dataset(dataset, data_root)
    images, labels = as_set(images, labels, "images")
    check_set(images, labels, data, "images")
    if isinstance(protocol, str):
        protocol = resolve_protocol(protocol, data.name)
    elif not isinstance(protocol, Protocol):
        raise ValueError(f"protocol = {protocol!r:.40}; allowed: {', '.join(protocol_names())} or a Protocol")
    if epochs is not None:
        protocol = replace(protocol, epochs=epochs)
    network_factory(arch, data)()  # an unknown or unbuildable architecture fails here, before training
    with keeping_freed_memory():
        return evaluate_set(images, labels, data, arch, protocol, runs, seed)


# A set to evaluate is bounded: beyond these it is refused before it is converted, decoded or trained on.
MAX_SET_IMAGES = 1_000_000
MAX_SET_BYTES = 2 << 30  # 2 GiB of decoded float32 pixels; also the most a set file may hold on disk


def check_set_size(count: int, image_shape: tuple[int, ...] | torch.Size, where: str) -> None:
    """``count`` images of ``image_shape`` fit the bounds (:data:`MAX_SET_IMAGES`, :data:`MAX_SET_BYTES` as
    float32), else one ValueError line. Call it before decoding (count x factor**2) or converting."""
    nbytes = count * math.prod(int(d) for d in image_shape) * 4
    if count > MAX_SET_IMAGES or nbytes > MAX_SET_BYTES:
        raise ValueError(
            f"{where}: {count} images of {' x '.join(str(int(d)) for d in image_shape) or 'one value'} "
            f"({nbytes / 2**30:.2f} GiB as float32); allowed: at most {MAX_SET_IMAGES} images and "
            f"{MAX_SET_BYTES // 2**30} GiB"
        )


def as_set(images: Any, labels: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) as float32 and int64 tensors, checked first: tensors of real numbers, at most the bounded
    size, labels integers (a fractional, infinite or NaN label is refused, never truncated into a class)."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(
            f"{where}: images and labels must be tensors, got {type(images).__name__} and {type(labels).__name__}"
        )
    for name, t in (("images", images), ("labels", labels)):
        if t.layout != torch.strided or t.is_quantized:
            kind = "quantized" if t.layout == torch.strided else str(t.layout).replace("torch.", "")
            raise ValueError(f"{where}: {name} are a {kind} tensor; allowed: dense tensors (use .to_dense())")
        if t.device.type == "meta":
            raise ValueError(f"{where}: {name} are a meta tensor (shape only, no values); allowed: tensors with values")
        if t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{where}: {name} of dtype {t.dtype}; allowed: real numbers")
    if not images.is_floating_point():
        raise ValueError(
            f"{where}: images of dtype {images.dtype}; allowed: floating-point pixels in [0, 1] "
            "(for 8-bit images: images.float() / 255)"
        )
    check_set_size(images.shape[0] if images.ndim else 1, tuple(images.shape[1:]), where)
    if labels.numel() > MAX_SET_IMAGES:
        raise ValueError(f"{where}: {labels.numel()} labels; allowed: at most {MAX_SET_IMAGES}")
    if labels.is_floating_point():
        bad = labels[~(torch.isfinite(labels) & (labels == labels.round()) & (labels.abs() < 2**31))]
        if bad.numel():
            raise ValueError(f"{where}: labels must be integers (class indices), found {bad.flatten()[0].item()!r}")
    return images.float(), labels.long()


def load_external_set(
    path: str, data: ImageDataset | None = None, experiment: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Read a set produced elsewhere as (pixel-space images, labels, decode factor).

    Layouts: dreambench's dict (images/labels[/factor]); IDC/DREAM's ``[x, y]`` (stored images of their
    factor-2 runs); DC/DSA/DM's ``{'data': [[images, labels], ...], 'accs_all_exps': ...}``, one pair per
    experiment and images still normalised, so ``data`` (for its mean/std) is needed and ``experiment`` picks one.
    The file must be a regular file of at most :data:`MAX_SET_BYTES` (checked before it is read), the set within
    the bounds of :func:`check_set_size` and its labels integers (:func:`as_set`); else one ValueError line.
    """
    try:
        check_regular_file(path, MAX_SET_BYTES)
    except RefusedFileError as err:
        raise ValueError(str(err).replace("allowed: a file", "allowed: a set file")) from None
    obj = load_tensor_file(path)
    dc_style = isinstance(obj, dict) and "data" in obj and not {"images", "labels"} <= set(obj)
    if experiment and not dc_style:
        raise ValueError(f"{path}: --experiment {experiment} is for DC/DSA/DM result files; this file holds one set")
    if isinstance(obj, dict) and {"images", "labels"} <= set(obj):
        images, labels, factor = obj["images"], obj["labels"], obj.get("factor", 1)
        if isinstance(factor, torch.Tensor) and factor.numel() == 1 and not factor.is_floating_point():
            factor = int(factor.item())
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"{path}: factor = {factor!r:.40}; allowed: an integer >= 1")
        images, labels = as_set(images, labels, path)
    elif isinstance(obj, dict) and isinstance(obj.get("data"), (list, tuple)) and obj["data"]:
        pairs = obj["data"]
        if not 0 <= experiment < len(pairs):
            raise ValueError(
                f"{path}: DC-style file with {len(pairs)} experiments; --experiment must be in [0, {len(pairs) - 1}]"
            )
        if not isinstance(pairs[experiment], (list, tuple)) or len(pairs[experiment]) != 2:
            raise ValueError(
                f"{path}: experiment {experiment} of its 'data' is not an [images, labels] pair; allowed: DC/DSA/DM's "
                "{'data': [[images, labels], ...]}"
            )
        if data is None:
            raise ValueError(f"{path}: DC-style images are normalised; the dataset is needed to undo it")
        images, labels = as_set(pairs[experiment][0], pairs[experiment][1], path)
        if images.ndim != 4 or images.shape[1] != data.channels:
            raise ValueError(
                f"{path}: images of shape {tuple(images.shape)}; {data.name} needs N x {data.channels} x H x W"
            )
        images, factor = data.denormalize(images), 1
    elif isinstance(obj, (list, tuple)) and len(obj) == 2:
        # IDC/DREAM save the stored (undecoded) images; their published runs use factor 2
        images, labels = as_set(obj[0], obj[1], path)
        factor = 2
    else:
        raise ValueError(
            f"{path}: expected a dict with 'images' and 'labels', IDC/DREAM's [images, labels] pair, "
            "or DC/DSA/DM's {'data': [[images, labels], ...]}"
        )
    return images, labels, factor


def check_set(images: torch.Tensor, labels: torch.Tensor, data: ImageDataset, where: str = "set") -> None:
    """A set can train a network of ``data``: non-empty, bounded, finite, image shape and integer labels
    matching the dataset."""
    shape = tuple(data.train_images.shape[1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(
            f"{where}: images of shape {tuple(images.shape)}; {data.name} needs N x {' x '.join(map(str, shape))}"
        )
    if len(images) == 0:
        raise ValueError(f"{where}: the set is empty")
    check_set_size(len(images), shape, where)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{where}: {len(images)} images but labels of shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"{where}: labels of dtype {labels.dtype}; allowed: integer class indices")
    if int(labels.min()) < 0 or int(labels.max()) >= data.num_classes:
        raise ValueError(
            f"{where}: labels must lie in [0, {data.num_classes - 1}], found {int(labels.min())}..{int(labels.max())}"
        )
    if not torch.isfinite(images).all():
        raise ValueError(f"{where}: images hold NaN or infinite values")
