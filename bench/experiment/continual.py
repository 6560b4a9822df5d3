"""Class-incremental learning with distilled memories (paper Fig. 11, docs/official-code.md §11).

Classes arrive in ``steps`` groups. At each step a memory of ``ipc`` images per class is distilled from
that step's classes only, and a network is trained on the memories of every class seen so far, then
tested on the test images of those classes. Two protocols:

- ``idc`` (IDC's code): one network carried across steps, its head grown (old rows kept, new rows fresh),
  cross-entropy plus knowledge distillation from the previous step's model on the old classes' logits
  (KL at T = 2, weight T^2 x beta with beta = 1, as the official code); one class order;
- ``dc`` (DC's ``CL_DM.py``): a new network from scratch at every step on all memories (protocol A), over
  several class orders.

The grown head is realised as a full-size head whose logits are sliced to the seen classes; at each step the
new classes' rows are re-initialised from a fresh network, which is the same as appending fresh rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.loaders import ImageDataset
from bench.learning.evaluation import PROTOCOLS as EVAL_PROTOCOLS
from bench.learning.evaluation import Protocol, fit
from bench.learning.training import build_net, default_device, derive_seed, seeded
from methods.base import Budget, Method

PROTOCOLS = ("idc", "dc")


@dataclass
class ContinualResult:
    order: list[int]
    accuracies: list[float]  # per step, on all classes seen so far (%)


def class_order(num_classes: int, order_seed: int, steps: int, sort_groups: bool) -> list[int]:
    """DC's orders: numpy permutation under np.random.seed(s); IDC sorts classes inside each step group."""
    order = np.random.RandomState(order_seed).permutation(num_classes).tolist()
    if sort_groups:
        size = num_classes // steps
        order = [c for g in range(steps) for c in sorted(order[g * size : (g + 1) * size])]
    return order


def relabel(data: ImageDataset, order: list[int]) -> ImageDataset:
    """Labels become positions in the class order, so 'seen classes' are a prefix."""
    position = torch.empty(data.num_classes, dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(order))
    return dataclasses.replace(data, train_labels=position[data.train_labels], test_labels=position[data.test_labels])


def classes_subset(data: ImageDataset, first: int, count: int) -> ImageDataset:
    """Training images of classes [first, first + count) relabelled 0..count-1 (for distilling one step)."""
    keep = (data.train_labels >= first) & (data.train_labels < first + count)
    test_keep = (data.test_labels >= first) & (data.test_labels < first + count)
    return dataclasses.replace(
        data,
        train_images=data.train_images[keep],
        train_labels=data.train_labels[keep] - first,
        test_images=data.test_images[test_keep],
        test_labels=data.test_labels[test_keep] - first,
        num_classes=count,
        class_names=(),
    )


def _train(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_out: int,
    data: ImageDataset,
    protocol: Protocol,
    gen: torch.Generator,
    teacher: nn.Module | None,
    n_old: int,
    temperature: float = 2.0,
) -> None:
    """CE over the first ``n_out`` logits (+ KD on the ``n_old`` old ones when a teacher is given)."""

    def loss_fn(x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits[:, :n_out], y)
        if teacher is not None and n_old > 0:
            with torch.no_grad():
                ref = teacher(x)[:, :n_old]
            loss = loss + distillation_term(logits[:, :n_old], ref, temperature)
        return loss

    fit(net, images, labels, data, protocol, gen, loss_fn=loss_fn)


def distillation_term(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0, beta: float = 1.0
) -> torch.Tensor:
    """IDC's KD loss on the old classes' logits: KL per sample (summed over classes, averaged over the batch)
    x T^2 x beta; equal to the official ``KLDivLoss()`` (element mean) x T^2 x beta x n_old."""
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="batchmean")
    return kl * temperature**2 * beta


@torch.no_grad()
def grow_head(net: nn.Module, fresh: nn.Module, first: int, end: int) -> None:
    """New classes get freshly initialised classifier rows (weight decay has shrunk the unused ones)."""
    net.classifier.weight[first:end] = fresh.classifier.weight[first:end]
    net.classifier.bias[first:end] = fresh.classifier.bias[first:end]


@torch.no_grad()
def _accuracy_on_seen(net: nn.Module, data: ImageDataset, n_seen: int, n_out: int) -> float:
    """Test images of the seen classes; prediction = argmax over the first ``n_out`` outputs."""
    net.eval()
    keep = data.test_labels < n_seen
    x, y = data.test_images[keep], data.test_labels[keep]
    device = next(net.parameters()).device
    preds = torch.cat(
        [net(data.normalize(x[i : i + 500].to(device)))[:, :n_out].argmax(1).cpu() for i in range(0, len(x), 500)]
    )
    return float((preds == y).float().mean() * 100)


def run_continual(
    data: ImageDataset,
    method: Method,
    ipc: int,
    steps: int,
    make_distill_net: Callable[[ImageDataset], Callable[[], nn.Module]],
    make_eval_net: Callable[[], nn.Module],
    protocol_name: str,
    protocol: Protocol,
    budget: Budget,
    seed: int,
    order_seed: int,
) -> ContinualResult:
    """Distil a memory per step and evaluate on all seen classes after every step."""
    if protocol_name not in PROTOCOLS:
        raise ValueError(f"unknown continual protocol {protocol_name!r}; allowed: {list(PROTOCOLS)}")
    if data.num_classes % steps:
        raise ValueError(f"{data.num_classes} classes cannot be split into {steps} equal steps")
    per_step = data.num_classes // steps
    order = class_order(data.num_classes, order_seed, steps, sort_groups=protocol_name == "idc")
    ordered = relabel(data, order)
    device = default_device()
    memory_x: list[torch.Tensor] = []
    memory_y: list[torch.Tensor] = []
    net: nn.Module | None = None
    accuracies = []
    for step in range(steps):
        first = step * per_step
        subset = classes_subset(ordered, first, per_step)
        distilled = method.distill(
            subset, ipc, make_distill_net(subset), budget, derive_seed(seed, "continual distillation", step)
        )
        x, y = distilled.decoded()
        memory_x.append(x)
        memory_y.append(y + first)
        n_seen = first + per_step
        teacher = None
        if protocol_name == "idc" and net is not None:
            teacher = build_net(make_eval_net, 0, device)
            teacher.load_state_dict(net.state_dict())
            teacher.eval()
        fresh = build_net(make_eval_net, derive_seed(seed, "continual network", step), device)
        if protocol_name == "dc" or net is None:
            net = fresh
        else:
            grow_head(net, fresh, first, n_seen)
        # IDC: the head has exactly the seen classes; DC: a fixed head over every class
        n_out = n_seen if protocol_name == "idc" else data.num_classes
        _train(
            net,
            torch.cat(memory_x),
            torch.cat(memory_y),
            n_out,
            ordered,
            protocol,
            seeded(derive_seed(seed, "continual batches", step)),
            teacher,
            first,
        )
        accuracies.append(_accuracy_on_seen(net, ordered, n_seen, n_out))
    return ContinualResult(order, accuracies)


def training_protocol(name: str) -> Protocol:
    """IDC: batch 64, milestones 0.6E/0.8E (x0.2), per-image DSA, no CutMix beside the KD term; DC: protocol A."""
    if name == "idc":
        return dataclasses.replace(EVAL_PROTOCOLS.get("B"), name="CL-idc", milestones=(0.6, 0.8), cutmix_p=0.0)
    return dataclasses.replace(EVAL_PROTOCOLS.get("A"), name="CL-dc")
