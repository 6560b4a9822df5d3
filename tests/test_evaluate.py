"""Evaluation protocols and the external-set evaluator on real digits."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.data import load_dataset
from bench.evaluate import PROTOCOLS, _lr_at, evaluate_set, load_external_set, main, resolve_protocol

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_b_schedule_and_a_halving():
    b = PROTOCOLS["B"]
    assert [_lr_at(b, e, 1000) for e in (0, 665, 666, 832, 833)] == pytest.approx([0.01, 0.01, 0.002, 0.002, 0.0004])
    a = PROTOCOLS["A"]
    # DC decays after epoch E//2+1 has run: the first reduced epoch is E//2+2
    assert _lr_at(a, 501, 1000) == pytest.approx(0.01) and _lr_at(a, 502, 1000) == pytest.approx(0.001)
    assert resolve_protocol("B", "digits").cutmix_p == 0.0 and resolve_protocol("B", "cifar10").cutmix_p == 0.5
    assert resolve_protocol("A-dc", "digits").name == "A" and resolve_protocol("A-dc", "cifar10").name == "A-noaug"
    with pytest.raises(ValueError, match="allowed"):
        resolve_protocol("Z", "digits")


def test_real_images_train_a_net_far_above_chance():
    data = load_dataset("digits")
    idx = torch.cat([data.class_indices(c)[:10] for c in range(10)])
    protocol = dataclasses.replace(PROTOCOLS["B"], epochs=40)
    result = evaluate_set(data.train_images[idx], data.train_labels[idx], data, "ConvNet-3", protocol, runs=2, seed=0)
    assert len(result.accuracies) == 2 and result.mean > 60.0
    assert result.accuracies[0] != result.accuracies[1]        # independently initialised networks


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
