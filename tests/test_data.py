"""Tests for bench.data.loaders: the embedded digits set, every loader on tiny real-format files, errors, registry.

No test downloads anything: fixtures are written into tmp_path by tests/fake_datasets.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fake_datasets import (
    tiny_colour,
    write_cifar10,
    write_cifar100,
    write_mnist,
    write_svhn,
    write_tinyimagenet,
)

from bench.data import loaders as data
from bench.data.info import DATASET_INFO, DatasetInfo, IdcValues, canonical
from bench.data.loaders import (
    DatasetNotFoundError,
    ImageDataset,
    UnknownDatasetError,
    list_datasets,
    load_dataset,
    register_dataset,
    resolve_root,
)

ALL = ["cifar10", "cifar100", "digits", "fashionmnist", "mnist", "svhn", "tinyimagenet"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DREAMBENCH_DATA", raising=False)
    monkeypatch.delenv("DREAMBENCH_SKIP_MD5", raising=False)


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits")


def _as_float_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x).float() / 255
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def _check_common(ds: ImageDataset, channels: int, size: int, num_classes: int) -> None:
    for x, y in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (channels, size, size)
        assert len(x) == len(y) > 0
        assert 0.0 <= x.min().item() and x.max().item() <= 1.0
        assert 0 <= y.min().item() and y.max().item() < num_classes
    assert ds.channels == channels and ds.image_size == (size, size) and ds.num_classes == num_classes
    assert len(ds.mean) == len(ds.std) == channels


# ------------------------------------------------------------------------------------------------ registry


def test_registry_names() -> None:
    assert list_datasets() == ALL


@pytest.mark.parametrize("bad", ["imagenet", "cifar-11", ""])
def test_unknown_name_lists_allowed(bad: str) -> None:
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset(bad)
    msg = str(err.value)
    assert repr(bad) in msg and all(n in msg for n in ALL)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_name_lookup_ignores_case_and_separators(digits: ImageDataset) -> None:
    assert load_dataset("DIGITS").name == "digits"
    assert canonical("FashionMNIST") == canonical("fashion_mnist") == "fashionmnist"
    assert canonical("TinyImageNet") == canonical("tiny-imagenet") == "tinyimagenet"
    assert canonical("CIFAR10") == "cifar10"


def test_register_dataset_decorator(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(data.LOADERS, "_entries", dict(data.LOADERS._entries))
    monkeypatch.setattr(DATASET_INFO, "_entries", dict(DATASET_INFO._entries))
    seen = {}

    @register_dataset(DatasetInfo("Toy-Set", 3, 2, 4, ((0.5, 0.5), (0.25, 0.25)), IdcValues("mse", 1e-3, 4, 6)))
    def _toy(root, *, download, verify, cifar100_stats, **_):
        seen.update(root=root, download=download, verify=verify)
        x = torch.rand(6, 2, 4, 4)
        y = torch.tensor([0, 1, 2, 0, 1, 2])
        return ImageDataset("toyset", x, y, x[:3].clone(), y[:3].clone(), 3, (0.5, 0.5), (0.25, 0.25))

    assert "toyset" in list_datasets()
    ds = load_dataset("toy_set", root=tmp_path, max_per_class=1)
    assert seen == {"root": tmp_path, "download": False, "verify": True}
    assert ds.train_labels.tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        register_dataset(DatasetInfo("toyset", 3, 2, 4, None, IdcValues("mse", 1e-3, 4, 6)))(_toy)


def test_root_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from pathlib import Path

    assert resolve_root() == Path("data")
    monkeypatch.setenv("DREAMBENCH_DATA", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    # the env var is really used by load_dataset
    write_cifar10(tmp_path / "env")
    monkeypatch.setenv("DREAMBENCH_SKIP_MD5", "1")
    assert len(load_dataset("cifar10").train_images) == 20
    # and ./data is the fallback
    monkeypatch.delenv("DREAMBENCH_DATA")
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data")
    assert len(load_dataset("mnist").train_images) == 20


# ------------------------------------------------------------------------------------------------ digits


def test_digits_shape_split_and_stats(digits: ImageDataset) -> None:
    from sklearn.datasets import load_digits

    _check_common(digits, channels=1, size=16, num_classes=10)
    assert len(digits.train_images) + len(digits.test_images) == 1797
    target = load_digits().target
    counts = np.bincount(target, minlength=10)
    for c in range(10):
        assert (digits.train_labels == c).sum().item() == counts[c] - counts[c] // 4
        assert (digits.test_labels == c).sum().item() == counts[c] // 4 > 0
    assert torch.allclose(torch.tensor(digits.mean), digits.train_images.mean(), atol=1e-6)
    assert torch.allclose(torch.tensor(digits.std), digits.train_images.std(correction=0), atol=1e-6)
    assert 0.0 < digits.mean[0] < 1.0


def test_digits_split_follows_rule(digits: ImageDataset) -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    up = F.interpolate(
        torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16,
        size=(16, 16),
        mode="bilinear",
        align_corners=False,
        antialias=False,
    )
    for c in (0, 7):
        idx = np.flatnonzero(raw.target == c)
        test_idx, train_idx = idx[3::4], np.delete(idx, np.arange(3, len(idx), 4))
        assert torch.allclose(digits.test_images[digits.test_labels == c], up[test_idx])
        assert torch.allclose(digits.images_of_class(c), up[train_idx])
    # upsampling of a flat image keeps it flat; 0..16 maps to [0, 1]
    assert digits.train_images.max().item() == pytest.approx(1.0)


def test_digits_deterministic(digits: ImageDataset) -> None:
    again = load_dataset("digits")
    assert torch.equal(again.train_images, digits.train_images)
    assert torch.equal(again.test_labels, digits.test_labels)


def test_class_indices_cached_and_correct(digits: ImageDataset) -> None:
    idx = digits.class_indices(4)
    assert idx.dtype == torch.int64 and bool((digits.train_labels[idx] == 4).all())
    assert idx.tolist() == sorted(idx.tolist())
    assert len(idx) == (digits.train_labels == 4).sum().item()
    assert digits.class_indices(4) is idx
    with pytest.raises(IndexError):
        digits.class_indices(10)


def test_max_per_class(digits: ImageDataset) -> None:
    small = load_dataset("digits", max_per_class=5)
    assert len(small.train_images) == 50 and len(small.test_images) == len(digits.test_images)
    for c in range(10):
        assert torch.equal(small.images_of_class(c), digits.images_of_class(c)[:5])
    assert small.mean == digits.mean  # constants come from the full train split
    with pytest.raises(ValueError):
        load_dataset("digits", max_per_class=0)


def test_normalize(digits: ImageDataset) -> None:
    x = digits.train_images[:8].clone().requires_grad_(True)
    z = digits.normalize(x)
    expected = (x.detach() - digits.mean[0]) / digits.std[0]
    assert torch.allclose(z, expected)
    z.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 1 / digits.std[0]))
    assert torch.allclose(digits.normalize(x[0]), expected[0])  # C x H x W works too
    assert torch.allclose(digits.denormalize(z), x)
    rgb = ImageDataset(
        "rgb",
        torch.rand(2, 3, 4, 4),
        torch.tensor([0, 1]),
        torch.rand(1, 3, 4, 4),
        torch.tensor([0]),
        2,
        (0.1, 0.2, 0.3),
        (0.5, 0.25, 2.0),
    )
    out = rgb.normalize(torch.ones(1, 3, 2, 2, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert out[0, :, 0, 0].tolist() == pytest.approx([1.8, 3.2, 0.35])
    assert "rgb" in repr(rgb) and "tensor(" not in repr(rgb)


def test_image_dataset_validates() -> None:
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError):
        ImageDataset("bad", x, y, x, y, 2, (0.5,), (0.5,))  # mean has 1 entry for 3 channels
    with pytest.raises(ValueError):
        ImageDataset("bad", x, y.int(), x, y, 2, (0.5,) * 3, (0.5,) * 3)


# ------------------------------------------------------------------------------------------------ torchvision-backed


@pytest.mark.parametrize(
    "name,folder,stats",
    [
        ("mnist", "MNIST", ((0.1307,), (0.3081,))),
        ("fashionmnist", "FashionMNIST", ((0.2861,), (0.3530,))),
    ],
)
def test_mnist_like(tmp_path, name: str, folder: str, stats) -> None:
    ref = write_mnist(tmp_path, folder)
    ds = load_dataset(name, root=tmp_path)  # MNIST has no md5 check on raw files: verify does not matter
    _check_common(ds, channels=1, size=28, num_classes=10)
    assert (ds.mean, ds.std) == stats
    assert torch.equal(ds.train_images, _as_float_nchw(ref["train_x"]))
    assert torch.equal(ds.test_images, _as_float_nchw(ref["t10k_x"]))
    assert ds.train_labels.tolist() == ref["train_y"].tolist()
    assert ds.train_images[3, 0, 5, 7].item() == pytest.approx(ref["train_x"][3, 5, 7] / 255)


@pytest.mark.parametrize("subdir", ["svhn", ""])
def test_svhn(tmp_path, subdir: str) -> None:
    ref = write_svhn(tmp_path / subdir if subdir else tmp_path)
    ds = load_dataset("svhn", root=tmp_path, verify=False)
    _check_common(ds, channels=3, size=32, num_classes=10)
    assert ds.mean == (0.4377, 0.4438, 0.4728) and ds.std == (0.1980, 0.2010, 0.1970)
    assert torch.equal(ds.train_images, _as_float_nchw(ref["train_x"]))
    assert ds.train_labels.tolist() == ref["train_y"].tolist()  # label 10 became 0
    assert 0 in ds.train_labels.tolist() and ds.train_labels.max().item() == 9
    # one known pixel: image 2, row 3, column 4, green channel
    assert ds.test_images[2, 1, 3, 4].item() == pytest.approx(ref["test_x"][2, 3, 4, 1] / 255)


def test_cifar10(tmp_path) -> None:
    ref = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path, verify=False)
    _check_common(ds, channels=3, size=32, num_classes=10)
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2023, 0.1994, 0.2010)
    assert torch.equal(ds.train_images, _as_float_nchw(ref["train_x"]))
    assert torch.equal(ds.test_images, _as_float_nchw(ref["test_x"]))
    assert ds.train_labels.tolist() == ref["train_y"].tolist()
    assert ds.class_names == tuple(f"class{i}" for i in range(10))
    assert ds.train_images[7, 2, 31, 0].item() == pytest.approx(ref["train_x"][7, 31, 0, 2] / 255)


def test_cifar100_and_stats_choice(tmp_path) -> None:
    ref = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", root=tmp_path, verify=False)
    _check_common(ds, channels=3, size=32, num_classes=100)
    assert ds.train_labels.tolist() == ref["train_y"].tolist()  # fine labels
    assert torch.equal(ds.test_images, _as_float_nchw(ref["test_x"]))
    assert (ds.mean, ds.std) == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # IDC/DREAM default
    dc = load_dataset("cifar100", root=tmp_path, verify=False, cifar100_stats="dc")
    assert (dc.mean, dc.std) == ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762))
    with pytest.raises(ValueError):
        load_dataset("cifar100", root=tmp_path, verify=False, cifar100_stats="imagenet")


def test_skip_md5_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", root=tmp_path)
    monkeypatch.setenv("DREAMBENCH_SKIP_MD5", "1")
    assert len(load_dataset("cifar10", root=tmp_path).test_images) == 10
    with pytest.raises(DatasetNotFoundError):  # an explicit argument wins over the env var
        load_dataset("cifar10", root=tmp_path, verify=True)


@pytest.mark.parametrize(
    "name,writer",
    [("cifar10", write_cifar10), ("cifar100", write_cifar100), ("svhn", lambda r: write_svhn(r / "svhn"))],
)
def test_verify_rejects_wrong_md5(tmp_path, name: str, writer) -> None:
    writer(tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=tmp_path, verify=True)
    msg = str(err.value)
    assert "corrupt" in msg and "md5" in msg and str(tmp_path) in msg and "\n" not in msg


def test_unreadable_file_is_corrupt(tmp_path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetNotFoundError, match="corrupt"):
        load_dataset("cifar10", root=tmp_path, verify=False)
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(DatasetNotFoundError, match="corrupt") as err:
        load_dataset("mnist", root=tmp_path)
    assert "SKIP_MD5" not in str(err.value)  # MNIST has no md5 check, so that hint would mislead


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("fashionmnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
        ("svhn", "svhn/train_32x32.mat"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
        ("tinyimagenet", "tiny-imagenet-200/wnids.txt"),
    ],
)
@pytest.mark.parametrize("verify", [True, False])
def test_missing_files(tmp_path, name: str, expected: str, verify: bool) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=tmp_path, verify=verify)
    msg = str(err.value)
    assert str(tmp_path / expected) in msg and "DREAMBENCH_DATA" in msg and "\n" not in msg
    assert isinstance(err.value, FileNotFoundError)


def test_partially_missing_cifar_names_the_missing_file(tmp_path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match="test_batch"):
        load_dataset("cifar10", root=tmp_path, verify=False)


def test_failed_download_is_converted(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    def no_network(self) -> None:
        raise OSError("simulated: no network")

    def mirrors_failed(self) -> None:  # torchvision's MNIST reports every mirror, one per line
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried a, got:\nno network\n")

    monkeypatch.setattr(tvd.CIFAR10, "download", no_network)  # never touch the network in tests
    monkeypatch.setattr(tvd.MNIST, "download", mirrors_failed)
    for name in ("cifar10", "mnist"):
        with pytest.raises(DatasetNotFoundError, match="download .*failed") as err:
            load_dataset(name, root=tmp_path, download=True)
        assert "\n" not in str(err.value) and "no network" in str(err.value)


# ------------------------------------------------------------------------------------------------ TinyImageNet


def test_tinyimagenet_folder(tmp_path) -> None:
    ref = write_tinyimagenet(tmp_path)
    ds = load_dataset("tinyimagenet", root=tmp_path)
    _check_common(ds, channels=3, size=64, num_classes=3)
    assert ds.mean == (0.485, 0.456, 0.406) and ds.std == (0.229, 0.224, 0.225)
    assert ds.class_names == tuple(ref["wnids"])  # sorted wnids
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # known flat colours survive JPEG to within 2 levels; greyscale image became 3 equal channels
    for row, (k, i) in {0: (0, 0), 1: (0, 1), 5: (1, 2), 6: (2, 0)}.items():
        colour = torch.tensor(tiny_colour(k, i), dtype=torch.float32) / 255
        assert torch.allclose(ds.train_images[row, :, 32, 32], colour, atol=2 / 255), (k, i)
    assert ds.class_names[1] == "n02000003"  # its image 0 (row 3) was saved greyscale
    assert torch.allclose(ds.train_images[3], torch.full((3, 64, 64), 128 / 255), atol=2 / 255)
    assert [k for k, _ in ref["val"]] == ds.test_labels.tolist()
    for n, (_, rgb) in enumerate(ref["val"]):
        assert torch.allclose(ds.test_images[n, :, 10, 20], torch.tensor(rgb) / 255, atol=2 / 255)


def test_tinyimagenet_bad_val_wnid(tmp_path) -> None:
    write_tinyimagenet(tmp_path)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text().replace("n01000002", "n99999999", 1))
    with pytest.raises(DatasetNotFoundError, match="n99999999"):
        load_dataset("tinyimagenet", root=tmp_path)


def test_tinyimagenet_preprocessed_pt(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    xtr = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=g)
    xva = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=g)
    torch.save(
        {
            "classes": [f"w{i}" for i in range(200)],
            "images_train": xtr,
            "labels_train": torch.tensor([0, 1, 199, 5]),
            "images_val": xva,
            "labels_val": torch.tensor([3, 4]),
        },
        tmp_path / "tinyimagenet.pt",
    )
    ds = load_dataset("tinyimagenet", root=tmp_path)
    _check_common(ds, channels=3, size=64, num_classes=200)
    assert torch.equal(ds.train_images, xtr.float() / 255)
    assert ds.train_labels.tolist() == [0, 1, 199, 5]
