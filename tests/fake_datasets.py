"""Write tiny datasets in the exact on-disk formats torchvision 0.29 reads (tests only; no network).

Every writer fills images with a deterministic pattern and returns the uint8 arrays it wrote (as
``N x H x W [x C]`` in natural image layout) and the labels, so tests can check pixel round-trips.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _pattern(n: int, *shape: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n: int, num_classes: int) -> np.ndarray:
    return (np.arange(n) % num_classes).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX ("SN3 Pascal Vincent") uint8 file: magic 0x0000_08_<ndim>, big-endian int32 dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (MNIST and FashionMNIST)."""
    raw = root / folder / "raw"
    out = {}
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = _pattern(n, 28, 28, seed=seed), _labels(n, 10)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[f"{prefix}_x"], out[f"{prefix}_y"] = x, y
    return out


def write_svhn(folder: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    """``<folder>/{train,test}_32x32.mat``: X is H x W x C x N uint8, y is N x 1 in 1..10 (10 means digit 0)."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 2), ("test", n_test, 3)):
        x = _pattern(n, 32, 32, 3, seed=seed)  # N x H x W x C
        digits = _labels(n, 10)
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        savemat(folder / f"{split}_32x32.mat", {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)), "y": y})
        out[f"{split}_x"], out[f"{split}_y"] = x, digits
    return out


def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 10) -> dict[str, np.ndarray]:
    """``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` pickles (rows = R,G,B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for b in range(1, 6):
        x, y = _pattern(per_batch, 32, 32, 3, seed=10 + b), (np.arange(per_batch) + b * per_batch) % 10
        _pickle(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": y.tolist(),
                "data": x.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
                "filenames": [f"{b}_{i}.png" for i in range(per_batch)],
            },
        )
        xs.append(x)
        ys.append(y)
    tx, ty = _pattern(n_test, 32, 32, 3, seed=20), np.arange(n_test) % 10
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": ty.tolist(),
            "data": tx.transpose(0, 3, 1, 2).reshape(n_test, 3072),
        },
    )
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    return {"train_x": np.concatenate(xs), "train_y": np.concatenate(ys), "test_x": tx, "test_y": ty}


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    """``<root>/cifar-100-python/{train,test,meta}`` pickles with fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 30), ("test", n_test, 31)):
        x, y = _pattern(n, 32, 32, 3, seed=seed), (np.arange(n) * 7) % 100
        _pickle(
            folder / split,
            {
                "fine_labels": y.tolist(),
                "coarse_labels": (y // 5).tolist(),
                "data": x.transpose(0, 3, 1, 2).reshape(n, 3072),
            },
        )
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    _pickle(
        folder / "meta",
        {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]},
    )
    return out


TINY_WNIDS = ["n02000003", "n01000002", "n03000001"]  # deliberately unsorted, as in the real wnids.txt


def tiny_colour(k: int, i: int) -> tuple[int, int, int]:
    """Flat colour of the i-th image of class k (JPEG keeps flat colours to within ~1 level)."""
    return (40 * k + 10, 5 * i + 20, 200 - 30 * k)


def write_tinyimagenet(root: Path, per_class: int = 3, val_per_class: int = 2) -> dict[str, object]:
    """``<root>/tiny-imagenet-200``: wnids.txt, train/<wnid>/images/*.JPEG, val/images + val_annotations.txt.

    Every image is a flat colour given by :func:`tiny_colour` (k = index in sorted wnids); one train image
    of the first wnid is stored greyscale ('L') to exercise the RGB conversion.
    """
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    order = sorted(TINY_WNIDS)
    for w in TINY_WNIDS:
        k = order.index(w)
        d = folder / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(per_class):
            img = Image.new("RGB", (64, 64), tiny_colour(k, i))
            if w == TINY_WNIDS[0] and i == 0:
                img = Image.new("L", (64, 64), 128)
            img.save(d / f"{w}_{i}.JPEG", quality=100)
    lines, val = [], []
    n = 0
    for i in range(val_per_class):
        for w in TINY_WNIDS:
            k = order.index(w)
            name = f"val_{n}.JPEG"
            Image.new("RGB", (64, 64), tiny_colour(k, 40 + i)).save(folder / "val" / "images" / name, quality=100)
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
            val.append((k, tiny_colour(k, 40 + i)))
            n += 1
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"wnids": order, "val": val}
