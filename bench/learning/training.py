"""The one supervised training loop, shared by evaluation, in-loop network updates, warm-up and coresets."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.transfer import to_device
from bench.data.augment import DiffAugment, cutmix

ToInput = Callable[[torch.Tensor], torch.Tensor]
BatchHook = Callable[[torch.Tensor, torch.Tensor], None]  # (sample indices, logits)
LossHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (inputs, logits, labels) -> loss


def device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``'s kind, or a no-op context when ``dtype`` is None (full precision)."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def train_epoch(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    to_input: ToInput,
    gen: torch.Generator,
    aug: DiffAugment | None = None,
    cutmix_p: float = 0.0,
    max_samples: int | None = None,
    on_batch: BatchHook | None = None,
    loss_fn: LossHook | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """One shuffled pass (or the first ``max_samples`` of it); returns the mean loss.

    Per batch: to_input (normalise) -> per-image DSA under no_grad -> CutMix with probability p. ``loss_fn``
    replaces cross-entropy (continual learning's head slice and distillation term); not with CutMix.
    ``autocast_dtype`` (e.g. bf16) runs the forward pass and loss under autocast; augmentation, backward and
    the optimiser step stay in full precision.
    """
    if loss_fn is not None and cutmix_p > 0:
        raise ValueError("a custom loss_fn cannot be combined with CutMix")
    net.train()
    device = device_of(net)
    order = torch.randperm(len(images), generator=gen)
    if max_samples is not None:  # IDC stops after the batch that reaches max_samples: every batch is full
        order = order[: -(-max_samples // batch_size) * batch_size]
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device: no sync per batch
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = to_input(to_device(images[to_device(idx, images.device)], device))
        y = to_device(labels[to_device(idx, labels.device)], device)
        if aug is not None:
            with torch.no_grad():
                x = aug(x, gen)
        mixed = cutmix(x, y, gen) if cutmix_p > 0 and float(torch.rand(1, generator=gen)) < cutmix_p else None
        with autocast_to(device, autocast_dtype):
            if mixed is not None:
                logits = net(mixed.images)
                loss = mixed.loss(logits)
            else:
                logits = net(x)
                loss = loss_fn(x, logits, y) if loss_fn is not None else F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_batch is not None:
            on_batch(idx, logits.detach())
        total += loss.detach().double() * len(idx)
        count += len(idx)
    return float(total) / max(count, 1)


def batch_dependent(net: nn.Module) -> bool:
    """Whether a sample's output depends on the rest of its batch (batch-norm layers in training mode)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in net.modules())


def inference_batch(net: nn.Module, default: int = 512) -> int:
    """Images per forward pass when only outputs are needed. On a CPU, 32, so that a batch's activations
    stay in cache (ConvNet-3 on 28x28 inputs: 1.3-1.5x faster than 500 on the 2-core development machine),
    unless a batch-norm layer in training mode makes outputs depend on the batch; on a GPU, ``default``."""
    if device_of(net).type != "cpu":
        return default
    return default if batch_dependent(net) else 32


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, to_input: ToInput) -> torch.Tensor:
    net.eval()
    device = device_of(net)
    batch = inference_batch(net)
    out = [net(to_input(images[i : i + batch].to(device))).argmax(1).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, to_input: ToInput) -> float:
    """Top-1 accuracy in percent."""
    return float((predict(net, images, to_input) == labels.cpu()).float().mean() * 100)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Every random stream a run draws from beyond its base seed: stream name -> (seed, index) -> seed. Written once
# here; the formulas are the ones every recorded result was made with, so changing one changes results.
SEED_STREAMS: dict[str, Callable[[int, int], int]] = {
    "matching network": lambda seed, k: seed * 1_000_003 + k,  # the fresh network of outer iteration k
    "warm-up batches": lambda seed, k: seed * 31 + k,  # DREAM+'s real-data epoch for that network
    "iteration": lambda seed, k: seed * 7_919 + k,  # batches and augmentation of iteration k
    "evaluation network": lambda seed, k: seed * 1000 + k,  # evaluation run k of a set
    "continual distillation": lambda seed, k: seed * 100 + k,  # the memory distilled at step k
    "continual network": lambda seed, k: seed * 1000 + k,  # the network trained after step k
    "continual batches": lambda seed, k: seed * 7 + k,  # its batch order
}


def derive_seed(seed: int, stream: str, index: int = 0) -> int:
    """The seed of ``stream``'s ``index``-th draw for a run seeded ``seed`` (see SEED_STREAMS)."""
    if stream not in SEED_STREAMS:
        raise KeyError(f"unknown seed stream {stream!r}; allowed: {', '.join(SEED_STREAMS)}")
    return SEED_STREAMS[stream](seed, index)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)


def build_net(make_net: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """A network whose initial weights depend only on ``seed`` (not on the clock or earlier draws)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_net().to(device)
