"""Real image datasets for dreambench: loading, on-disk layout, normalisation constants.

Every loader returns an :class:`ImageDataset` whose images are float32 ``N x C x H x W`` tensors in
**[0, 1] pixel space, not normalised** (the IDC/DREAM convention, docs/official-code.md §2.1). Methods that work
in normalised space (DC/DSA/DM) call :meth:`ImageDataset.normalize` themselves; it is differentiable and
device-agnostic, so it can sit inside an augmentation pipeline.

Registry names (``list_datasets()``): ``digits``, ``mnist``, ``fashionmnist``, ``svhn``, ``cifar10``,
``cifar100``, ``tinyimagenet``. Lookup ignores case, ``-``, ``_`` and spaces, so ``"CIFAR10"``,
``"FashionMNIST"`` and ``"TinyImageNet"`` (the DC spellings) work too.

Data root: the ``root`` argument, else the ``DREAMBENCH_DATA`` environment variable, else ``./data``.
Expected layout under the root::

    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]     (the published .gz files, read in place)
    FashionMNIST/raw/...                                            (same file names)
    svhn/{train,test}_32x32.mat        (or directly in the root, as DC's code keeps them)
    cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    cifar-100-python/{train,test,meta}
    tiny-imagenet-200/{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,val/val_annotations.txt}
    tinyimagenet.pt    (optional: DC/DREAM's preprocessed uint8 file; preferred over the folder if present)

``digits`` needs no files: it is scikit-learn's bundled copy of the UCI optical digits (1,797 8x8 images),
the embedded default for smoke tests and mini runs.

Integrity: torchvision checks the md5 of the CIFAR and SVHN files; the MNIST loaders check the published
``.gz`` files against torchvision's md5 list. ``verify=True`` (default) keeps that
check; ``verify=False``, or the environment variable ``DREAMBENCH_SKIP_MD5=1``, only checks that the files
exist (needed for tiny test fixtures written in the real format). Missing or corrupt data, and failed
downloads, raise :class:`DatasetNotFoundError` with one line naming the expected path.

CIFAR-100 normalisation: the official repos disagree (docs/official-code.md §2.1, §13.11). We default to IDC/DREAM's
choice, which reuses the CIFAR-10 constants (``data.py``: ``MEANS['cifar100'] = MEANS['cifar']``);
``load_dataset('cifar100', cifar100_stats='dc')`` gives DC's CIFAR-100 constants instead.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.registry import Registry
from bench.data.info import (
    DATASET_INFO,
    DatasetInfo,
    IdcValues,
    Stats,
    UnknownDatasetError,
    canonical,
)

__all__ = [
    "ImageDataset",
    "DatasetNotFoundError",
    "UnknownDatasetError",
    "DATASET_INFO",
    "DatasetInfo",
    "register_dataset",
    "list_datasets",
    "load_dataset",
    "resolve_root",
]


def cifar100_stats_choice(choice: str) -> Stats:
    """CIFAR-100's normalisation: 'idc' (default; IDC/DREAM reuse the CIFAR-10 constants) or 'dc' (DC/DSA/DM's own)."""
    info = DATASET_INFO.get("cifar100")
    options = {"idc": info.stats, "dc": info.stats_dc}
    if choice not in options:
        raise ValueError(f"cifar100_stats must be one of {sorted(options)}, got {choice!r}")
    return options[choice]  # type: ignore[return-value]


CIFAR10_STATS: Stats = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # docs/official-code.md §2.1
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS_IMAGE_SIZE = 16  # 8x8 upsampled so a depth-3 ConvNet fits: 16 -> 8 -> 4 -> 2.


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing, corrupt, or could not be downloaded; the message says where and how to fix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class ImageDataset:
    """A labelled image classification dataset held in memory as [0,1] float32 tensors.

    Images are ``N x C x H x W`` float32 in pixel space (not normalised); labels are int64 in
    ``[0, num_classes)``. ``mean``/``std`` are the per-channel constants that :meth:`normalize` applies.
    Treat the tensors as read-only: :meth:`class_indices` caches per-class indices of ``train_labels``.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    _class_idx: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.class_names = tuple(self.class_names)
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if x.ndim != 4 or x.dtype != torch.float32:
                raise ValueError(
                    f"{self.name}: {split}_images must be float32 N x C x H x W, got {x.dtype} {tuple(x.shape)}"
                )
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(
                    f"{self.name}: {split}_labels must be int64 of length {len(x)}, got {y.dtype} {tuple(y.shape)}"
                )
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(f"{self.name}: train and test image shapes differ")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{self.name}: mean/std need {self.channels} entries, got {self.mean} / {self.std}")

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, train={tuple(self.train_images.shape)}, "
            f"test={tuple(self.test_images.shape)}, num_classes={self.num_classes}, mean={self.mean}, "
            f"std={self.std})"
        )

    @property
    def channels(self) -> int:
        """Number of image channels C."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image (height, width), like DC's ``im_size``."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def class_indices(self, c: int) -> torch.Tensor:
        """Indices (LongTensor, ascending) of the training images of class ``c``; cached after the first call."""
        c = int(c)
        if not 0 <= c < self.num_classes:
            raise IndexError(f"{self.name}: class {c} out of range [0, {self.num_classes})")
        if not self._class_idx:
            order = torch.argsort(self.train_labels, stable=True)
            counts = torch.bincount(self.train_labels, minlength=self.num_classes).tolist()
            for k, idx in enumerate(torch.split(order, counts)):
                self._class_idx[k] = idx
        return self._class_idx[c]

    def images_of_class(self, c: int) -> torch.Tensor:
        """All training images of class ``c`` (a copy), ``n_c x C x H x W`` in [0,1]."""
        return self.train_images[self.class_indices(c)]

    def _stat(self, values: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.tensor(values, dtype=dtype, device=x.device).view(-1, 1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel for ``... x C x H x W`` input; differentiable, on ``x``'s device."""
        return (x - self._stat(self.mean, x)) / self._stat(self.std, x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: ``x * std + mean``."""
        return x * self._stat(self.std, x) + self._stat(self.mean, x)

    def subsample(self, max_per_class: int) -> ImageDataset:
        """A copy keeping the first ``max_per_class`` training images of each class (dataset order); test unchanged."""
        if max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
        keep = torch.cat([self.class_indices(c)[:max_per_class] for c in range(self.num_classes)])
        keep = keep.sort().values  # keep the original interleaving of classes
        return ImageDataset(
            name=self.name,
            train_images=self.train_images[keep],
            train_labels=self.train_labels[keep],
            test_images=self.test_images,
            test_labels=self.test_labels,
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            class_names=self.class_names,
        )


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


class DatasetLoader(Protocol):
    """Signature of a registered loader: build an ImageDataset from files under ``root``."""

    def __call__(self, root: Path, *, download: bool, verify: bool, cifar100_stats: str) -> ImageDataset: ...


LOADERS: Registry[DatasetLoader] = Registry("dataset", UnknownDatasetError, canonical)


def register_dataset(info: DatasetInfo) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator: the one place a dataset is added, its facts (``bench.data.info.DATASET_INFO``) and its
    loader together. Names are looked up ignoring case and separators ('CIFAR-10' = 'cifar10')."""

    def deco(loader: DatasetLoader) -> DatasetLoader:
        LOADERS.add(info.name, loader)
        DATASET_INFO.add(info.name, info)
        return loader

    return deco


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(LOADERS.names())


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Data root: explicit ``root``, else ``$DREAMBENCH_DATA``, else ``./data`` (relative to the cwd)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("DREAMBENCH_DATA")
    return Path(env).expanduser() if env else Path("data")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    download: bool | None = None,
    *,
    verify: bool | None = None,
    max_per_class: int | None = None,
    cifar100_stats: str = "idc",
) -> ImageDataset:
    """Load a registered dataset into memory as an :class:`ImageDataset`.

    ``download`` fetches missing files through torchvision (never by default; None: ``DREAMBENCH_DOWNLOAD=1``,
    which ``dreambench run --download`` sets). ``verify=None`` means md5
    checks on unless ``DREAMBENCH_SKIP_MD5=1``. ``max_per_class`` keeps the first n training images per
    class. ``cifar100_stats`` ('idc' default, or 'dc') picks CIFAR-100's normalisation constants and is
    ignored by other datasets. Raises :class:`UnknownDatasetError` or :class:`DatasetNotFoundError`.
    """
    loader = LOADERS.get(name)
    cifar100_stats_choice(cifar100_stats)
    if verify is None:
        verify = not _env_flag("DREAMBENCH_SKIP_MD5")
    if download is None:
        download = _env_flag("DREAMBENCH_DOWNLOAD")
    ds = _checked(
        loader(resolve_root(root), download=download, verify=verify, cifar100_stats=cifar100_stats), resolve_root(root)
    )
    if max_per_class is not None:
        ds = ds.subsample(max_per_class)
    return ds


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

_HOW = (
    "put the published files there ({what}), or point --data-root DIR / DREAMBENCH_DATA=DIR at a folder "
    "holding them, or add --download (DREAMBENCH_DOWNLOAD=1) to fetch them with torchvision"
)
# Exceptions that torchvision / pickle / scipy / PIL raise on unreadable or truncated files.
_READ_ERRORS = (
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AssertionError,
    pickle.UnpicklingError,
)


def _not_found(name: str, path: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{name} not found: expected {path}; " + _HOW.format(what=what))


def _corrupt(name: str, path: Path, detail: str) -> DatasetNotFoundError:
    hint = ", or set DREAMBENCH_SKIP_MD5=1 if they are deliberately modified copies" if detail == "md5 mismatch" else ""
    return DatasetNotFoundError(
        f"{name} files at {path} are corrupt or incomplete ({detail}); delete them, then copy them again or run "
        f"with --download{hint}"
    )


def _describe(e: BaseException) -> str:
    """``Type: message`` squeezed onto one short line (torchvision's download errors span several lines)."""
    msg = " ".join(str(e).split())
    msg = msg if len(msg) <= 200 else msg[:197] + "..."
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _uint8_to_float(x: np.ndarray | torch.Tensor, layout: str) -> torch.Tensor:
    """uint8 images (``NHW``, ``NHWC`` or ``NCHW``) -> float32 ``NCHW`` in [0,1]."""
    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    if layout == "NHW":
        t = t.unsqueeze(1)
    elif layout == "NHWC":
        t = t.permute(0, 3, 1, 2)
    return t.to(torch.float32).div_(255.0).contiguous()


def _labels(y: object, name: str = "", path: Path | None = None) -> torch.Tensor:
    """Class labels as int64, refusing (as corrupt files at ``path``) labels that are not integers: fractional,
    non-finite or non-numeric values are never truncated into a class."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.dtype.kind == "f":
        bad = arr[~(np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**31))].ravel()
        if bad.size:
            raise _corrupt(name, path or Path("."), f"labels must be integers, found {bad[0].item()!r}")
    elif arr.dtype.kind not in "iu":
        raise _corrupt(name, path or Path("."), f"labels must be integers, found values of type {arr.dtype}")
    return torch.as_tensor(arr, dtype=torch.int64).flatten()


Split = tuple[torch.Tensor, torch.Tensor]


def _check_splits(name: str, key: str, path: Path, splits: dict[str, Split], num_classes: int) -> None:
    """The loaded splits of dataset ``key`` (files at ``path``) are whole: N x C x H x W images of the dataset's
    channels and size (``DATASET_INFO``), one label per image, labels in [0, classes), no empty split, train and
    test alike. Anything else is a corrupt copy (DatasetNotFoundError), refused before any work."""
    info = DATASET_INFO.get(key) if key in DATASET_INFO else None
    classes = min(num_classes, info.classes) if info is not None else num_classes
    shapes = {}
    for split, (x, y) in splits.items():
        if x.ndim != 4:
            raise _corrupt(name, path, f"{split} images of shape {tuple(x.shape)}; allowed: N x C x H x W")
        if y.ndim != 1 or len(y) != len(x):
            raise _corrupt(name, path, f"{split}: {len(x)} images but labels of shape {tuple(y.shape)}")
        if len(x) == 0:
            raise _corrupt(name, path, f"{split}: no images")
        shape = tuple(int(d) for d in x.shape[1:])
        if info is not None and shape != (info.channels, info.image_size, info.image_size):
            raise _corrupt(
                name,
                path,
                f"{split} images of {' x '.join(map(str, shape))}; {key} has "
                f"{info.channels} x {info.image_size} x {info.image_size}",
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise _corrupt(name, path, f"{split} labels must lie in [0, {classes - 1}], found {low}..{high}")
        shapes[split] = shape
    if len(set(shapes.values())) > 1:
        raise _corrupt(
            name,
            path,
            "train and test images differ in shape ("
            + ", ".join(f"{s} {' x '.join(map(str, v))}" for s, v in shapes.items())
            + ")",
        )


def _checked(ds: ImageDataset, path: Path, name: str | None = None) -> ImageDataset:
    _check_splits(
        name or ds.name,
        ds.name,
        path,
        {"train": (ds.train_images, ds.train_labels), "test": (ds.test_images, ds.test_labels)},
        ds.num_classes,
    )
    return ds


def _without_md5(cls: type) -> type:
    """Subclass of a torchvision dataset class whose integrity checks only test that the files exist."""
    attrs: dict[str, object] = {}
    # CIFAR checks md5s in _check_integrity *and* _load_meta, SVHN in _check_integrity: md5=None means "exists".
    if hasattr(cls, "train_list"):
        attrs["train_list"] = [[f, None] for f, _ in cls.train_list]
        attrs["test_list"] = [[f, None] for f, _ in cls.test_list]
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}
    return type(f"{cls.__name__}NoMD5", (cls,), attrs)


def _open_torchvision(
    cls: type, name: str, folder: Path, files: list[str], what: str, download: bool, verify: bool, **kwargs: object
) -> object:
    """Instantiate a torchvision dataset, turning its missing/corrupt/download errors into DatasetNotFoundError."""
    tv_cls = cls if verify else _without_md5(cls)
    try:
        return tv_cls(**kwargs, download=download)
    except _READ_ERRORS as e:
        missing = [f for f in files if not (folder / f).is_file()]
        if download and missing:
            raise DatasetNotFoundError(
                f"{name}: download into {folder} failed ({_describe(e)}); "
                f"no network? copy the files there, or set DREAMBENCH_DATA to a folder holding {what}"
            ) from e
        if missing:
            raise _not_found(name, folder / missing[0], what) from e
        detail = "md5 mismatch" if verify and "corrupt" in str(e) else _describe(e)
        raise _corrupt(name, folder, detail) from e


# --------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------


@register_dataset(
    DatasetInfo("digits", 10, 1, DIGITS_IMAGE_SIZE, None, IdcValues("l1", 1e-4, 16, 500), digit_like=True, flip=False)
)
def _load_digits(root: Path, *, download: bool, verify: bool, cifar100_stats: str, **_: object) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits, scaled to [0,1], bilinearly upsampled to 16x16, fixed split.

    Split: within each class, in dataset order, every 4th sample (within-class index % 4 == 3) is test.
    Mean/std are the pixel mean / population std of the (16x16) train split; no files, no network.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.as_tensor(raw.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    x = F.interpolate(
        x, size=(DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=False
    )
    x = x.clamp_(0.0, 1.0)
    y = torch.as_tensor(raw.target, dtype=torch.int64)
    rank = torch.zeros_like(y)  # position of each sample within its class
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        rank[idx] = torch.arange(len(idx))
    test = rank % 4 == 3
    train_x = x[~test]
    return ImageDataset(
        name="digits",
        train_images=train_x,
        train_labels=y[~test],
        test_images=x[test],
        test_labels=y[test],
        num_classes=10,
        mean=(train_x.mean().item(),),
        std=(train_x.std(correction=0).item(),),
        class_names=tuple(str(c) for c in range(10)),
    )


_IDX_DTYPES = {0x08: np.uint8}
_IDX_MAX_VALUES = 1 << 31  # 2 GiB of bytes in one IDX file (MNIST's largest holds 47 million)


def _read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """An IDX file (MNIST's format) read from ``path`` or, when only the published copy exists, ``path.gz``.

    Written here (rather than through torchvision) because torchvision only reads the decompressed files and
    would write them next to the ``.gz`` files; this reads the published files in place, never writing. The
    header is checked first (``ndim`` dimensions when given, a bounded size), so a damaged or hostile header is
    refused before its body is read or decompressed, and the body must hold exactly the values the header gives.
    """
    source = path if path.is_file() else path.with_name(path.name + ".gz")
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise ValueError(f"{source.name} is not an unsigned-byte IDX file")
        if ndim is not None and head[3] != ndim:
            raise ValueError(f"{source.name} has {head[3]} dimensions; allowed: {ndim} ({path.name.split('-')[1]})")
        raw_dims = fh.read(4 * head[3])
        if len(raw_dims) < 4 * head[3]:
            raise ValueError(f"{source.name} ends inside its header")
        dims = [int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(head[3])]
        total = math.prod(dims)
        if total > _IDX_MAX_VALUES:
            raise ValueError(f"{source.name}: its header says {dims}, more than {_IDX_MAX_VALUES} values")
        raw = fh.read(total + 1)
    if len(raw) != total:
        held = f"{len(raw)}" if len(raw) <= total else "more"
        raise ValueError(f"{source.name} holds {held} values, its header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims).copy()  # read-only buffer; tensors need writable memory


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_mnist_like(cls_name: str, key: str, root: Path, download: bool, verify: bool) -> ImageDataset:
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    raw = root / cls_name / "raw"
    files = [f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    what = (
        f"{cls_name}/raw/: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz"
    )

    def missing() -> list[str]:
        return [f for f in files if not (raw / f).is_file() and not (raw / f"{f}.gz").is_file()]

    if missing() and download:
        # torchvision downloads and extracts into <root>/<cls_name>/raw, the folder the user chose
        _open_torchvision(cls, cls_name, raw, files, what, True, True, root=str(root), train=True)
    if missing():
        raise _not_found(cls_name, raw / f"{missing()[0]}.gz", what)
    if verify:  # the published .gz files have known md5s (torchvision's list); decompressed copies have none
        for gz_name, md5 in cls.resources:
            gz = raw / gz_name
            if gz.is_file() and not (raw / gz_name[:-3]).is_file() and file_digest(gz) != md5:
                raise _corrupt(cls_name, gz, "md5 mismatch")
    try:  # the published .gz files and decompressed copies alike: headers, sizes, counts, labels, shapes
        arrays = {f: _read_idx(raw / f, 3 if "images" in f else 1) for f in files}
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise _corrupt(cls_name, raw, _describe(e)) from e
    splits = {
        s: (
            _uint8_to_float(arrays[f"{s}-images-idx3-ubyte"], "NHW"),
            _labels(arrays[f"{s}-labels-idx1-ubyte"], cls_name, raw),
        )
        for s in ("train", "t10k")
    }
    _check_splits(cls_name, key, raw, splits, 10)
    mean, std = DATASET_INFO.get(key).stats
    return ImageDataset(key, *splits["train"], *splits["t10k"], 10, mean, std, tuple(cls.classes))


@register_dataset(
    DatasetInfo(
        "mnist",
        10,
        1,
        28,
        ((0.1307,), (0.3081,)),
        IdcValues("l1", 1e-4, 28, 500),
        digit_like=True,
        flip=False,
        paper_name="MNIST",
    )
)
def _load_mnist(root: Path, *, download: bool, verify: bool, cifar100_stats: str, **_: object) -> ImageDataset:
    """MNIST (28x28 grey) from ``<root>/MNIST/raw``: the published ``.gz`` files or decompressed copies."""
    return _load_mnist_like("MNIST", "mnist", root, download, verify)


@register_dataset(
    DatasetInfo(
        "fashionmnist",
        10,
        1,
        28,
        ((0.2861,), (0.3530,)),
        IdcValues("l1", 1e-4, 32, 500),  # size base 32 at 28 px: the official quirk
        paper_name="FashionMNIST",
        class_names=FASHION_CLASSES,
    )
)
def _load_fashionmnist(root: Path, *, download: bool, verify: bool, cifar100_stats: str, **_: object) -> ImageDataset:
    """Fashion-MNIST (28x28 grey) from ``<root>/FashionMNIST/raw`` (``.gz`` as published, or decompressed)."""
    return _load_mnist_like("FashionMNIST", "fashionmnist", root, download, verify)


def _svhn_raw_labels(path: Path) -> None:
    """SVHN's ``y`` as stored (torchvision casts it to int64, which would truncate fractions): integers in 1..10."""
    from scipy.io import loadmat

    try:
        y = loadmat(str(path), variable_names=["y"]).get("y")
    except _READ_ERRORS as e:
        raise _corrupt("SVHN", path, _describe(e)) from e
    if y is None:
        raise _corrupt("SVHN", path, "no labels ('y')")
    labels = _labels(y, "SVHN", path)
    if len(labels) and (int(labels.min()) < 1 or int(labels.max()) > 10):
        raise _corrupt(
            "SVHN", path, f"labels must lie in [1, 10] (10 is digit 0), found {int(labels.min())}..{int(labels.max())}"
        )


@register_dataset(
    DatasetInfo(
        "svhn",
        10,
        3,
        32,
        ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        IdcValues("mse", 5e-3, 32, 500),
        flip=False,
        paper_name="SVHN",
    )
)
def _load_svhn(root: Path, *, download: bool, verify: bool, cifar100_stats: str, **_: object) -> ImageDataset:
    """SVHN cropped digits (32x32 RGB, label 10 -> 0) from ``<root>/svhn/`` (or ``<root>/`` as in DC's code)."""
    from torchvision.datasets import SVHN

    files = ["train_32x32.mat", "test_32x32.mat"]
    folder = root / "svhn"
    if not folder.exists() and all((root / f).is_file() for f in files):
        folder = root  # DC keeps the .mat files directly in its data_path
    splits = {}
    for split in ("train", "test"):
        d = _open_torchvision(
            SVHN,
            "SVHN",
            folder,
            files,
            "svhn/train_32x32.mat and svhn/test_32x32.mat",
            download,
            verify,
            root=str(folder),
            split=split,
        )
        _svhn_raw_labels(folder / f"{split}_32x32.mat")
        splits[split] = (_uint8_to_float(d.data, "NCHW"), _labels(d.labels, "SVHN", folder))
    _check_splits("SVHN", "svhn", folder, splits, 10)
    mean, std = DATASET_INFO.get("svhn").stats
    return ImageDataset("svhn", *splits["train"], *splits["test"], 10, mean, std, tuple(str(c) for c in range(10)))


def _load_cifar(cls_name: str, key: str, root: Path, download: bool, verify: bool, stats: Stats) -> ImageDataset:
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    folder = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    splits = {}
    for train in (True, False):
        d = _open_torchvision(
            cls, cls_name, folder, files, f"{cls.base_folder}/", download, verify, root=str(root), train=train
        )
        splits["train" if train else "test"] = (_uint8_to_float(d.data, "NHWC"), _labels(d.targets, cls_name, folder))
    n = 100 if key == "cifar100" else 10
    _check_splits(cls_name, key, folder, splits, n)
    return ImageDataset(key, *splits["train"], *splits["test"], n, stats[0], stats[1], tuple(d.classes))


@register_dataset(
    DatasetInfo(
        "cifar10",
        10,
        3,
        32,
        CIFAR10_STATS,
        IdcValues("mse", 5e-3, 32, 2000),
        paper_name="CIFAR10",
        dm_lr_img_at_ipc=(100, 10.0),
        class_names=CIFAR10_CLASSES,
    )
)
def _load_cifar10(root: Path, *, download: bool, verify: bool, cifar100_stats: str, **_: object) -> ImageDataset:
    """CIFAR-10 (32x32 RGB) via torchvision.datasets.CIFAR10 from ``<root>/cifar-10-batches-py``."""
    return _load_cifar("CIFAR10", "cifar10", root, download, verify, DATASET_INFO.get("cifar10").stats)


@register_dataset(
    DatasetInfo(
        "cifar100",
        100,
        3,
        32,
        CIFAR10_STATS,  # IDC/DREAM reuse CIFAR-10's constants
        IdcValues("mse", 5e-3, 32, 2000),
        paper_name="CIFAR100",
        stats_dc=((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    )
)
def _load_cifar100(
    root: Path, *, download: bool, verify: bool, cifar100_stats: str = "idc", **_: object
) -> ImageDataset:
    """CIFAR-100 fine labels via torchvision.datasets.CIFAR100; stats 'idc' (CIFAR-10's, default) or 'dc'."""
    return _load_cifar("CIFAR100", "cifar100", root, download, verify, cifar100_stats_choice(cifar100_stats))


_TINY_HOW = (
    "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it there, or point --data-root DIR / "
    "DREAMBENCH_DATA=DIR at a folder holding tiny-imagenet-200/ (torchvision has no TinyImageNet downloader)"
)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _read_images(paths: list[Path], folder: Path) -> torch.Tensor:
    """Decode image files with PIL (a few threads; PIL releases the GIL while decoding) into NCHW float [0,1]."""
    if not paths:
        return torch.zeros(0, 3, 64, 64)
    try:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            arrays = list(pool.map(_read_rgb, paths, chunksize=256))
        stacked = np.stack(arrays)
    except (OSError, ValueError) as e:  # unreadable JPEG, or images of different sizes
        raise _corrupt("TinyImageNet", folder, _describe(e)) from e
    return _uint8_to_float(stacked, "NHWC")


def _load_tiny_pt(path: Path, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageDataset:
    """DC/DREAM's preprocessed ``tinyimagenet.pt``: uint8 images_train/images_val (NCHW), labels, classes."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        parts = []
        for split in ("train", "val"):
            x = d[f"images_{split}"]
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"images_{split} must be a uint8 N x C x H x W tensor")
            parts += [
                _uint8_to_float(x, "NHWC" if x.shape[-1] == 3 and x.shape[1] != 3 else "NCHW"),
                _labels(d[f"labels_{split}"], "TinyImageNet", path),
            ]
        classes = tuple(str(c) for c in d.get("classes", ()))
    except DatasetNotFoundError:
        raise
    except _READ_ERRORS as e:
        raise _corrupt("TinyImageNet", path, _describe(e)) from e
    _check_splits(
        "TinyImageNet",
        "tinyimagenet",
        path,
        {"train": (parts[0], parts[1]), "test": (parts[2], parts[3])},
        len(classes) or 200,
    )
    return ImageDataset("tinyimagenet", *parts, len(classes) or 200, mean, std, classes)


@register_dataset(
    DatasetInfo(
        "tinyimagenet",
        200,
        3,
        64,
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        IdcValues("mse", 5e-3, 32, 1000, lr_base_at_ipc=((50, 1e-6),), dream_batch_real=64),
        paper_name="TinyImageNet",
    )
)
def _load_tinyimagenet(root: Path, *, download: bool, verify: bool, cifar100_stats: str, **_: object) -> ImageDataset:
    """TinyImageNet (64x64 RGB, 200 classes; val = test split) from ``tiny-imagenet-200/`` or ``tinyimagenet.pt``.

    Class index = position of the wnid in sorted(wnids.txt) (ImageFolder's convention). The ``.pt`` file,
    which the official DC/DREAM code reads, is preferred when present (it is also far faster than ~110k JPEGs).
    """
    mean, std = DATASET_INFO.get("tinyimagenet").stats
    if (root / "tinyimagenet.pt").is_file():
        return _load_tiny_pt(root / "tinyimagenet.pt", mean, std)
    folder = root / "tiny-imagenet-200"
    for needed in (folder / "wnids.txt", folder / "train", folder / "val" / "val_annotations.txt"):
        if not needed.exists():
            raise DatasetNotFoundError(f"TinyImageNet not found: expected {needed}; {_TINY_HOW}")
    wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip()})
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_y = [], []
    for w in wnids:
        imgs = sorted(
            p for p in (folder / "train" / w / "images").glob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"}
        )
        train_paths += imgs
        train_y += [index[w]] * len(imgs)
    test_paths, test_y = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        cols = line.split("\t")
        if len(cols) < 2:
            continue
        if cols[1] not in index:
            raise _corrupt("TinyImageNet", folder, f"val wnid {cols[1]!r} not in wnids.txt")
        test_paths.append(folder / "val" / "images" / cols[0])
        test_y.append(index[cols[1]])
    for p in test_paths:
        if not p.is_file():
            raise _corrupt("TinyImageNet", folder, f"missing {p}")
    splits = {
        "train": (_read_images(train_paths, folder), torch.tensor(train_y, dtype=torch.int64)),
        "test": (_read_images(test_paths, folder), torch.tensor(test_y, dtype=torch.int64)),
    }
    _check_splits("TinyImageNet", "tinyimagenet", folder, splits, len(wnids))
    return ImageDataset(
        name="tinyimagenet",
        train_images=splits["train"][0],
        train_labels=splits["train"][1],
        test_images=splits["test"][0],
        test_labels=splits["test"][1],
        num_classes=len(wnids),
        mean=mean,
        std=std,
        class_names=tuple(wnids),
    )
