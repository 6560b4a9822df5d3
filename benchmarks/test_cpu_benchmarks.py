"""CPU benchmarks at small shapes (embedded digits, 16x16): one outer iteration of each engine preset and one
evaluation run. Not part of the test suite (``tests/`` is); run them with

    python -m pytest benchmarks/test_cpu_benchmarks.py --benchmark-only

and compare runs with ``--benchmark-save`` / ``--benchmark-compare`` (pytest-benchmark). Timings are of this
machine only; a figure quoted anywhere names the machine it came from.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.data.loaders import load_dataset
from bench.learning.evaluation import network_factory, resolve_protocol, train_and_test
from methods.base import Budget
from methods.components import create_method


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("batch_classes", [False, True], ids=["per-class", "all-classes"])
@pytest.mark.parametrize("method,ipc", [("DC", 1), ("DM", 10), ("IDC", 10), ("DREAM+", 10)])
def test_outer_iteration(benchmark, digits, method: str, ipc: int, batch_classes: bool) -> None:
    """One fresh network and two inner loops (DC/DM: their own steps per network) of the preset, class by
    class (the CPU default) and all classes in one pass (the GPU default), to compare in one run."""
    engine = create_method(method, "digits", ipc, {"batch_real": 32, "warmup_epochs": 0})
    budget = Budget(iterations=1, steps_per_network=2 if method in ("IDC", "DREAM+") else None)
    make = network_factory("ConvNet-3", digits)
    result = benchmark.pedantic(
        lambda: engine.distill(digits, ipc, make, budget, seed=0, batch_classes=batch_classes), rounds=3, iterations=1
    )
    assert torch.isfinite(result.images).all()


@pytest.mark.parametrize("ipc", [1, 10])
def test_evaluation_run(benchmark, digits, ipc: int) -> None:
    """One evaluation network, 20 epochs of DC's evaluation (the quickstart's protocol on digits)."""
    idx = torch.cat([digits.class_indices(c)[:ipc] for c in range(digits.num_classes)])
    protocol = dataclasses.replace(resolve_protocol("A-dc", "digits"), epochs=20)
    run = benchmark.pedantic(
        lambda: train_and_test(digits.train_images[idx], digits.train_labels[idx], digits, "ConvNet-3", protocol, 0),
        rounds=3,
        iterations=1,
    )
    assert 0.0 <= run.last <= 100.0


def test_dc_augmentation(benchmark) -> None:
    """DC's crop/scale/rotate on a batch of 100 MNIST-shaped images (one protocol-A-dcaug step at IPC 10)."""
    from bench.data.augment import DCAugment

    x, gen, aug = torch.rand(100, 1, 28, 28), torch.Generator().manual_seed(0), DCAugment()
    out = benchmark.pedantic(lambda: aug(x, gen), rounds=20, iterations=1)
    assert out.shape == x.shape
