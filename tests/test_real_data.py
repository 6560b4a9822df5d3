"""The published MNIST and FashionMNIST files, read in place (run when ../shared/data or $DREAMBENCH_DATA has them)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from bench.data.loaders import load_dataset

REPO = Path(__file__).resolve().parents[1]
PUBLISHED_MD5 = {  # torchvision's list of the official files
    "MNIST": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
FIRST_LABELS = {"MNIST": ([5, 0, 4, 1, 9], [7, 2, 1, 0, 4]), "FashionMNIST": ([9, 0, 0, 3, 0], [9, 2, 1, 1, 6])}


def real_root() -> Path | None:
    for candidate in (os.environ.get("DREAMBENCH_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


ROOT = real_root()
needs_real = pytest.mark.skipif(
    ROOT is None, reason="real MNIST/FashionMNIST not found in $DREAMBENCH_DATA or ../shared/data"
)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@needs_real
@pytest.mark.parametrize("folder,name", [("MNIST", "mnist"), ("FashionMNIST", "fashionmnist")])
def test_published_files_load_in_place(folder: str, name: str) -> None:
    before = snapshot(ROOT)
    for gz, md5 in PUBLISHED_MD5[folder].items():
        assert hashlib.md5((ROOT / folder / "raw" / gz).read_bytes()).hexdigest() == md5
    ds = load_dataset(name, ROOT)
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_labels[:5].tolist() == FIRST_LABELS[folder][0]
    assert ds.test_labels[:5].tolist() == FIRST_LABELS[folder][1]
    assert torch.bincount(ds.train_labels).tolist() == (
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949] if name == "mnist" else [6000] * 10
    )
    assert 0.0 <= float(ds.train_images.min()) and float(ds.train_images.max()) == 1.0
    # the pixel mean matches the published normalisation constant
    assert abs(float(ds.train_images.mean()) - ds.mean[0]) < 1e-3
    assert snapshot(ROOT) == before, "loading wrote into the data folder"


def test_gz_only_folder_is_read_and_checked(tmp_path) -> None:
    """A folder holding only .gz files loads; a .gz whose bytes differ from the published md5 is corrupt."""
    import gzip

    from tests.fake_datasets import write_mnist

    ref = write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for f in list(raw.iterdir()):
        (raw / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    ds = load_dataset("mnist", tmp_path, verify=False)
    assert ds.train_labels.tolist() == ref["train_y"].tolist()
    assert torch.equal(ds.train_images[:, 0], torch.as_tensor(ref["train_x"]).float() / 255)
    with pytest.raises(FileNotFoundError, match="md5 mismatch"):
        load_dataset("mnist", tmp_path, verify=True)
