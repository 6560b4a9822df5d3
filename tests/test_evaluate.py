"""Evaluation protocols and the external-set evaluator on real digits."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli.evaluate import main
from bench.data.augment import DCAugment
from bench.data.loaders import load_dataset
from bench.learning.evaluation import (
    PROTOCOLS,
    evaluate_set,
    load_external_set,
    lr_at,
    resolve_protocol,
    validation_epochs,
)

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_b_schedule_and_a_halving():
    b = PROTOCOLS.get("B")
    assert [lr_at(b, e) for e in (0, 665, 666, 832, 833)] == pytest.approx([0.01, 0.01, 0.002, 0.002, 0.0004])
    a = PROTOCOLS.get("A")
    # DC decays after epoch E//2+1 has run: the first reduced epoch is E//2+2
    assert lr_at(a, 501) == pytest.approx(0.01) and lr_at(a, 502) == pytest.approx(0.001)
    # IDC drops CutMix for MNIST only when the set is multi-formation (f > 1)
    assert resolve_protocol("B", "digits", factor=2).cutmix_p == 0.0 and resolve_protocol("B", "digits").cutmix_p == 0.5
    assert resolve_protocol("B", "cifar10", factor=2).cutmix_p == 0.5
    # DC's get_daparam: its own augmentation (1000 epochs) on MNIST, none (300 epochs) elsewhere
    assert resolve_protocol("A-dc", "mnist").name == "A-dcaug" and resolve_protocol("A-dc", "mnist").epochs == 1000
    assert (
        resolve_protocol("A-dc", "fashionmnist").name == "A-noaug"
        and resolve_protocol("A-dc", "fashionmnist").epochs == 300
    )
    with pytest.raises(ValueError, match="allowed"):
        resolve_protocol("Z", "digits")


def test_real_images_train_a_net_far_above_chance():
    data = load_dataset("digits")
    idx = torch.cat([data.class_indices(c)[:10] for c in range(10)])
    protocol = dataclasses.replace(PROTOCOLS.get("B"), epochs=40)
    result = evaluate_set(data.train_images[idx], data.train_labels[idx], data, "ConvNet-3", protocol, runs=2, seed=0)
    assert len(result.accuracies) == 2 and result.mean > 60.0
    assert result.accuracies[0] != result.accuracies[1]  # independently initialised networks
    # B checks the test set at 4 evenly spaced epochs; 'best' is their maximum, never below the last epoch
    assert validation_epochs(protocol) == {10, 20, 30, 40}
    assert all(b >= a for a, b in zip(result.accuracies, result.best))


def test_dc_augmentation_ops():
    g = torch.Generator().manual_seed(0)
    batch = torch.stack([torch.ones(1, 28, 28), torch.zeros(1, 28, 28)])  # per-channel batch mean 0.5
    crops = [DCAugment("crop")(batch, g) for _ in range(8)]
    values = torch.cat([c.flatten() for c in crops]).unique().tolist()
    assert set(values) <= {0.0, 0.5, 1.0} and 0.5 in values  # the pad is the batch mean
    assert any(not torch.equal(c, batch) for c in crops)  # offsets 0..7 around 4 shift
    scaled = DCAugment("scale")(batch, g)
    assert set(scaled.unique().tolist()) <= {0.0, 1.0}  # nearest resize, zero canvas
    flat = torch.full((3, 1, 28, 28), 0.25)
    assert torch.allclose(DCAugment("rotate")(flat, g), flat, atol=1e-5)  # fill = mean: a flat image stays flat
    x = torch.rand(6, 1, 28, 28)
    a, b = DCAugment()(x, torch.Generator().manual_seed(3)), DCAugment()(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    with pytest.raises(ValueError, match="allowed"):
        DCAugment("crop_flip")


def _dc_augment_image_by_image(aug: DCAugment, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """DC's ``augment`` as the official code runs it, one image at a time: the reference for the batched ops."""
    import numpy as np
    import torch.nn.functional as F
    from scipy.ndimage import rotate

    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
    _, channels, h, w = x.shape
    means, out = x.mean(dim=(0, 2, 3)), x.clone()
    for i in range(x.shape[0]):
        op = aug.ops[int(rng.integers(len(aug.ops)))]
        if op == "crop":
            c = aug.crop
            canvas = means.view(-1, 1, 1).expand(channels, h + 2 * c, w + 2 * c).clone()
            canvas[:, c : c + h, c : c + w] = x[i]
            r, k = int(rng.integers(2 * c)), int(rng.integers(2 * c))
            out[i] = canvas[:, r : r + h, k : k + w]
        elif op == "scale":
            sh, sw = (int(rng.uniform(1 - aug.scale, 1 + aug.scale) * h) for _ in range(2))
            resized = F.interpolate(x[i : i + 1], [sh, sw])[0]
            side = max(sh, sw, h, w)
            canvas = x.new_zeros(channels, side, side)
            canvas[:, (side - sh) // 2 : (side - sh) // 2 + sh, (side - sw) // 2 : (side - sw) // 2 + sw] = resized
            out[i] = canvas[:, (side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w]
        else:
            angle = int(rng.integers(-aug.rotate, aug.rotate))
            turned = rotate(x[i].numpy(), angle=angle, axes=(-2, -1), cval=float(means.mean()))
            top, left = (turned.shape[-2] - h) // 2, (turned.shape[-1] - w) // 2
            out[i] = torch.as_tensor(turned[:, top : top + h, left : left + w])
    return out


@pytest.mark.parametrize("strategy", ["crop_scale_rotate", "crop", "scale", "rotate"])
@pytest.mark.parametrize("shape", [(40, 1, 28, 28), (17, 3, 32, 32), (9, 1, 16, 12)])
def test_dc_augmentation_batched_equals_image_by_image(strategy, shape):
    """All images of an op at once give exactly the official per-image loop's result for the same draws."""
    aug = DCAugment(strategy, scale=0.4 if shape[2] == 16 else 0.2)  # 0.4: resized sides below and above 16 and 12
    for seed in range(3):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
        batched = aug(x, torch.Generator().manual_seed(seed))
        reference = _dc_augment_image_by_image(aug, x, torch.Generator().manual_seed(seed))
        assert torch.equal(batched, reference), (strategy, shape, seed)


@pytest.mark.parametrize("layout", ["dict", "idc-list"])
def test_external_sets_load_and_evaluate(tmp_path, layout, capsys):
    data = load_dataset("digits")
    idx = torch.cat([data.class_indices(c)[:2] for c in range(10)])
    x, y = data.train_images[idx], data.train_labels[idx]
    path = tmp_path / "data.pt"
    torch.save({"images": x, "labels": y, "factor": 1} if layout == "dict" else [x, y], path)
    images, labels, factor = load_external_set(str(path))
    # IDC/DREAM [x, y] files hold stored images of their published factor-2 runs
    assert torch.equal(images, x) and torch.equal(labels, y) and factor == (1 if layout == "dict" else 2)
    assert main([str(path), "--dataset", "digits", "--epochs", "5", "--runs", "1", "--factor", "1"]) == 0
    assert "ConvNet-3:" in capsys.readouterr().out


def test_external_set_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"pixels": torch.zeros(1)}, bad)
    proc = subprocess.run([sys.executable, "-m", "bench.evaluate", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "images" in proc.stderr


def test_dc_result_file_is_read_and_denormalised(tmp_path, capsys):
    """DC/DSA/DM save {'data': [[images, labels], ...], 'accs_all_exps': ...}: normalised images, numpy floats."""
    import numpy as np

    data = load_dataset("digits")
    idx = torch.cat([data.class_indices(c)[:1] for c in range(10)])
    x, y = data.train_images[idx], data.train_labels[idx]
    path = tmp_path / "res_DC_digits.pt"
    torch.save(
        {
            "data": [[data.normalize(x), y], [data.normalize(x.flip(-1)), y]],
            "accs_all_exps": {"ConvNet": [np.float64(0.9)]},
        },
        path,
    )
    images, labels, factor = load_external_set(str(path), data, experiment=1)
    assert torch.allclose(images, x.flip(-1), atol=1e-5) and torch.equal(labels, y) and factor == 1
    with pytest.raises(ValueError, match="experiment"):
        load_external_set(str(path), data, experiment=2)
    assert main([str(path), "--dataset", "digits", "--epochs", "2", "--runs", "1"]) == 0
    assert "ConvNet-3:" in capsys.readouterr().out
