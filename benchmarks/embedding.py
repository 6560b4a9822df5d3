"""Seconds per embedding pass of the representative sampler (DREAM's rule embeds every training image every
10 inner loops), and which GPU levers shorten it without changing the features beyond float rounding.

The H200 lease of commit 657fddb measured the pass at 0.24 s per refresh for 60,000 MNIST-shaped images
(0.024 s per inner loop, 80% of clustering). This times ``embed_all`` (the sampler's pass) on stand-in noise
of MNIST's / CIFAR-10's shape against variants: larger inference batches, channels-last tensors,
``torch.inference_mode`` and ``torch.compile`` of the embedding (forward only, so unlike the matching step
it compiles; the first call's seconds, the compile for that variant, are reported apart, as a run pays them
once per process). Each variant reports the largest feature difference from the plain pass, so a lever
that changes what the sampler picks shows up as more than rounding. JSON lines on stdout.

    python benchmarks/embedding.py --dataset mnist --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time
from typing import Callable, Iterator

import torch
from torch import nn

from bench.core.version import machine_label
from bench.data.info import dataset_info
from bench.learning.networks import create_network
from bench.learning.training import default_device

SHAPES = {"mnist": 60000, "cifar10": 50000}


@torch.no_grad()
def embed_in_batches(net: nn.Module, images: torch.Tensor, batch: int, channels_last: bool) -> torch.Tensor:
    """The sampler's pass with the lever settings as arguments (``methods.sampling.embed_all`` fixes them)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.cat(
        [net.embed(images[i : i + batch].contiguous(memory_format=fmt)) for i in range(0, len(images), batch)]
    )


def timed(fn: Callable[[], torch.Tensor], repeats: int, sync: Callable[[], None]) -> tuple[float, torch.Tensor]:
    """Median seconds of ``repeats`` calls after one untimed call, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out


class Compiled(nn.Module):
    """The network with ``embed`` compiled (weights stay inputs, so training steps between passes need no recompile)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.embed = net, torch.compile(net.embed)


def variants() -> Iterator[tuple[str, int, bool, bool, bool]]:
    """(label, batch, channels_last, inference_mode, compiled); the first is the sampler's current pass on a GPU."""
    yield "plain batch 512", 512, False, False, False
    for batch in (2048, 8192):
        yield f"batch {batch}", batch, False, False, False
    yield "channels-last batch 512", 512, True, False, False
    yield "channels-last batch 2048", 2048, True, False, False
    yield "inference_mode batch 2048", 2048, False, True, False
    yield "torch.compile batch 512", 512, False, False, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(SHAPES), default="mnist")
    parser.add_argument("--images", type=int, default=None, help="images per pass (default: the whole training set)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = default_device()
    info = dataset_info(args.dataset)
    n = args.images or SHAPES[args.dataset]
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, info.channels, info.image_size, info.image_size, generator=gen).to(device)
    net = create_network("ConvNet-3", info.channels, info.classes, info.image_size).to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    reference = None
    for label, batch, channels_last, inference, compiled in variants():
        model = copy.deepcopy(net).to(memory_format=torch.channels_last) if channels_last else net
        model = Compiled(model) if compiled else model
        mode = torch.inference_mode() if inference else contextlib.nullcontext()
        with mode:
            start = time.perf_counter()
            seconds, features = timed(lambda: embed_in_batches(model, images, batch, channels_last), args.repeats, sync)
            first_call = time.perf_counter() - start - seconds * args.repeats  # ~ the compile, for the compiled variant
        features = features.float().clone()
        reference = features if reference is None else reference
        row = {
            "dataset": args.dataset,
            "images": n,
            "variant": label,
            "seconds_per_pass": seconds,
            "seconds_per_inner_loop": seconds / 10,
            "max_abs_diff": float((features - reference).abs().max()),
            "feature_scale": float(reference.abs().max()),
            "machine": machine_label(),
            "data": "noise stand-in",
            "first_call_seconds": round(first_call, 2),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
