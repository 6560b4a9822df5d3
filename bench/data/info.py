"""Every fact about a dataset in one record: size, classes, normalisation, the paper's spelling, and the
per-dataset values of the official code (DSA's flip rule, DC's MNIST rule, IDC's ``--reproduce`` table).

A dataset is added in one place: ``@register_dataset(DatasetInfo(...))`` on its loader in ``bench/data/loaders.py``
registers both. Sources are in docs/official-code.md (§2.1 normalisation, §12 IDC/DREAM per-dataset values).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.registry import Registry, UnknownNameError

Stats = tuple[tuple[float, ...], tuple[float, ...]]


class UnknownDatasetError(UnknownNameError, ValueError):
    """A dataset name not in the registry; catchable as KeyError or ValueError."""


@dataclass(frozen=True)
class IdcValues:
    """IDC/DREAM's per-dataset ``--reproduce`` values (``misc/reproduce.py``, ``argument.py``)."""

    metric: str  # matching metric
    lr_base: float  # base image lr before the ipc / size scaling
    size_base: int  # lr scaling base size
    n_data: int  # real samples per in-loop network update
    factor: int = 2  # multi-formation factor of the published runs
    lr_base_at_ipc: tuple[tuple[int, float], ...] = ()  # (ipc, base lr) exceptions of the official table
    dream_batch_real: int = 128  # DREAM's real images per class per matching step


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset's facts. ``stats`` None means: computed from the training images (the embedded digits)."""

    name: str
    classes: int
    channels: int
    image_size: int
    stats: Stats | None
    idc: IdcValues
    digit_like: bool = False  # MNIST-like: DC augments its evaluation, IDC drops CutMix at f > 1
    flip: bool = True  # DSA/DC strategies keep 'flip' (not on digit sets)
    paper_name: str | None = None  # the column spelling of the paper's tables (None: not in the paper)
    stats_dc: Stats | None = None  # DC/DSA/DM's own constants where they differ from IDC's (CIFAR-100)
    dm_lr_img_at_ipc: tuple[int, float] | None = None  # DM's larger image lr from this ipc on (main_DM.py)
    class_names: tuple[str, ...] = ()  # for figures; empty: class indices

    @property
    def dsa_strategy(self) -> str:
        """DSA's augmentation families for this dataset (no flip on digit sets, as DSA advises)."""
        return "color_crop_cutout_flip_scale_rotate" if self.flip else "color_crop_cutout_scale_rotate"


def canonical(name: str) -> str:
    """'CIFAR-10', 'cifar_10', 'FashionMNIST' -> 'cifar10', 'cifar10', 'fashionmnist'."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


DATASET_INFO: Registry[DatasetInfo] = Registry("dataset", UnknownDatasetError, canonical)


def dataset_info(name: str) -> DatasetInfo:
    """The facts of ``name`` (any spelling); unknown names raise UnknownDatasetError listing the known ones."""
    return DATASET_INFO.get(name)
