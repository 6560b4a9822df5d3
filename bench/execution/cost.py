"""What a run will cost before it starts: images through networks per cell (matching, evaluation, feature
networks, continual steps) turned into CPU- and GPU-hours by measured seconds per image.

The rates are measurements (``calibration/cpu.json``, ``calibration/gpu.json``, written by
``benchmarks/cost_calibration.py``; each names its machine and source) of a ConvNet-3 step on 28x28 images,
scaled by image area. They are estimates: a network other than ConvNet-3, small-batch overheads and
clustering are not modelled, and ``--dry-run`` says which measurements it used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bench.data.info import dataset_info
from bench.experiment.plan import CellPlan

BASE_AREA = 28 * 28


def calibration(kind: str) -> dict[str, Any]:
    """The measured rates of ``kind`` ('cpu' or 'gpu') with the machine and source they were measured on."""
    path = resources.files("bench").joinpath(f"execution/calibration/{kind}.json")
    return json.loads(path.read_text())


@dataclass
class CellCost:
    """Images one cell pushes through networks, by kind of pass (28x28-equivalent after area scaling)."""

    train_large: float = 0.0  # training steps at batch ~256 (matching, feature networks)
    train_small: float = 0.0  # training steps at batch ~64 (evaluation protocols)
    test: float = 0.0  # forward passes (validation, embedding)

    def seconds(self, rates: dict[str, float]) -> float:
        return (
            self.train_large * rates["train_256"] + self.train_small * rates["train_64"] + self.test * rates["test_512"]
        )


def cell_cost(plan: CellPlan, train_images: int, test_images: int) -> CellCost:
    """The cell's passes: its method's matching work (``Method.cost``), the feature network a coreset trains,
    every evaluation run of every evaluation network, the accuracy curve's evaluations (``eval_every``: one
    network per logged point, iteration 0 and the last included), and a continual run's steps."""
    info = dataset_info(plan.data_used)
    scale = info.image_size**2 / BASE_AREA
    cell = plan.cell
    cost = CellCost()
    if cell.task != "evaluate":
        units, _ = plan.cost()
        cost.train_large += units * (plan.continual["steps"] if plan.continual else 1)
    if plan.feature_network is not None:
        cost.train_large += plan.feature_network["epochs"] * train_images
        cost.test += train_images
    set_images = cell.ipc * info.classes * plan.factor**2
    evaluations = [(protocol, protocol.epochs, plan.eval_runs) for protocol in plan.protocols.values()]
    iterations, every = (plan.config or {}).get("iterations"), plan.budget.eval_every
    if every and iterations and cell.task == "distill" and cell.eval_archs:  # the curve: one network per point
        first = plan.protocols[cell.eval_archs[0]]
        points = iterations // every + 1 + (1 if iterations % every else 0)
        evaluations.append((first, plan.curve_epochs or first.epochs, points))
    for protocol, epochs, networks in evaluations:
        passes = networks * epochs * set_images
        if protocol.batch_size >= 128:
            cost.train_large += passes
        else:
            cost.train_small += passes
        cost.test += networks * protocol.validations * test_images
    if plan.continual_training is not None:
        cost.train_small += plan.continual["steps"] * plan.continual_training.epochs * set_images
        cost.test += plan.continual["steps"] * test_images
    return CellCost(cost.train_large * scale, cost.train_small * scale, cost.test * scale)


def hours_by_method(costs: dict[str, list[CellCost]]) -> dict[str, tuple[float, float]]:
    """method -> (CPU hours, GPU hours), plus 'total'."""
    cpu, gpu = calibration("cpu")["seconds_per_image"], calibration("gpu")["seconds_per_image"]
    out = {
        m: (sum(c.seconds(cpu) for c in cs) / 3600, sum(c.seconds(gpu) for c in cs) / 3600) for m, cs in costs.items()
    }
    out["total"] = (sum(v[0] for v in out.values()), sum(v[1] for v in out.values()))
    return out


def calibration_line() -> str:
    """Which measurements the hours come from."""
    cpu, gpu = calibration("cpu"), calibration("gpu")
    return (
        f"rates: CPU {cpu['machine']} ({cpu['threads']} threads, measured {cpu['measured']}); "
        f"GPU {gpu['machine']} ({gpu.get('source', 'measured')}; {gpu.get('note', '')}); "
        "ConvNet-3 steps scaled by image area; estimates, not promises"
    )
