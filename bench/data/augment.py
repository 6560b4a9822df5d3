"""Differentiable Siamese augmentation (DSA) and CutMix, shared by DC/DSA/DM, IDC/DREAM and evaluation.

The primitives and strengths follow docs/official-code.md §2.3. Parameters are drawn from an explicit
``torch.Generator`` (never the global RNG, never the clock), so a "Siamese" call is simply one parameter
draw applied to several batches, and every run is reproducible from its seed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from bench.core.transfer import to_device

Params = dict[str, torch.Tensor]


def _uniform(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen)


def _view4(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-image (n,) parameter over (B, C, H, W); n is B or 1 (shared)."""
    return to_device(t, x.device).to(x.dtype).view(-1, 1, 1, 1)


@dataclass(frozen=True)
class AugOp:
    """One augmentation primitive: how to draw its parameters and how to apply them."""

    name: str
    sample: Callable[[int, int, torch.Generator], Params]  # (n, image_size, gen) -> params
    apply: Callable[[torch.Tensor, Params], torch.Tensor]


def _brightness(x: torch.Tensor, p: Params) -> torch.Tensor:
    return x + (_view4(p["u"], x) - 0.5) * 1.0


def _saturation(x: torch.Tensor, p: Params) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return mean + (x - mean) * (_view4(p["u"], x) * 2.0)


def _contrast(x: torch.Tensor, p: Params) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return mean + (x - mean) * (_view4(p["u"], x) + 0.5)


def _crop_sample(n: int, size: int, gen: torch.Generator) -> Params:
    shift = int(size * 0.125 + 0.5)
    return {
        "tx": torch.randint(-shift, shift + 1, (n,), generator=gen),
        "ty": torch.randint(-shift, shift + 1, (n,), generator=gen),
    }


def _crop(x: torch.Tensor, p: Params) -> torch.Tensor:
    """Integer translation; pixels that come from outside the image are 0 (docs/official-code.md §2.3)."""
    b, _, h, w = x.shape
    tx = to_device(p["tx"], x.device).expand(b)
    ty = to_device(p["ty"], x.device).expand(b)
    rows = (torch.arange(h, device=x.device).view(1, h) + tx.view(b, 1) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + ty.view(b, 1) + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2)


def _cutout_sample(n: int, size: int, gen: torch.Generator) -> Params:
    side = int(size * 0.5 + 0.5)
    high = size + (1 - side % 2)
    return {
        "ox": torch.randint(0, high, (n,), generator=gen),
        "oy": torch.randint(0, high, (n,), generator=gen),
    }


def _cutout(x: torch.Tensor, p: Params) -> torch.Tensor:
    """Zero a square of side round(H/2) centred at the drawn offset, clipped at the borders."""
    b, _, h, w = x.shape
    side = int(h * 0.5 + 0.5)
    ox = to_device(p["ox"], x.device).expand(b).view(b, 1)
    oy = to_device(p["oy"], x.device).expand(b).view(b, 1)
    start_x, start_y = ox - side // 2, oy - side // 2
    r = torch.arange(h, device=x.device).view(1, h)
    c = torch.arange(w, device=x.device).view(1, w)
    in_rows = (r >= start_x) & (r < start_x + side)
    in_cols = (c >= start_y) & (c < start_y + side)
    mask = ~(in_rows.view(b, h, 1) & in_cols.view(b, 1, w))
    return x * mask.unsqueeze(1).to(x.dtype)


def _flip(x: torch.Tensor, p: Params) -> torch.Tensor:
    do_flip = _view4(p["u"], x) < 0.5
    return torch.where(do_flip, x.flip(3), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    # align_corners=True reproduces the torch 1.2 behaviour the DC code was written against
    # (docs/official-code.md §2.3).
    theta = to_device(theta, x.device).to(x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _scale_sample(n: int, size: int, gen: torch.Generator) -> Params:
    ratio = 1.2
    return {
        "sx": _uniform(n, gen) * (ratio - 1.0 / ratio) + 1.0 / ratio,
        "sy": _uniform(n, gen) * (ratio - 1.0 / ratio) + 1.0 / ratio,
    }


def _scale(x: torch.Tensor, p: Params) -> torch.Tensor:
    sx, sy = p["sx"], p["sy"]
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def _rotate_sample(n: int, size: int, gen: torch.Generator) -> Params:
    return {"angle": (_uniform(n, gen) - 0.5) * 2 * 15 / 180 * math.pi}


def _rotate(x: torch.Tensor, p: Params) -> torch.Tensor:
    a = p["angle"]
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([a.cos(), -a.sin(), zero], 1), torch.stack([a.sin(), a.cos(), zero], 1)], 1)
    return _affine(x, theta)


def _unit_sample(n: int, size: int, gen: torch.Generator) -> Params:
    return {"u": _uniform(n, gen)}


OPS: dict[str, AugOp] = {
    op.name: op
    for op in (
        AugOp("brightness", _unit_sample, _brightness),
        AugOp("saturation", _unit_sample, _saturation),
        AugOp("contrast", _unit_sample, _contrast),
        AugOp("crop", _crop_sample, _crop),
        AugOp("cutout", _cutout_sample, _cutout),
        AugOp("flip", _unit_sample, _flip),
        AugOp("scale", _scale_sample, _scale),
        AugOp("rotate", _rotate_sample, _rotate),
    )
}

# A family is what a strategy string names; 'color' is three ops in sequence with their own draws.
FAMILIES: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("crop",),
    "cutout": ("cutout",),
    "flip": ("flip",),
    "scale": ("scale",),
    "rotate": ("rotate",),
}
GEOMETRIC = ("crop", "scale", "rotate")


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Split 'color_crop_cutout' into families, rejecting unknown names with the allowed list."""
    families = tuple(f for f in strategy.split("_") if f)
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"unknown augmentation family {f!r} in {strategy!r}; allowed: {sorted(FAMILIES)}")
    return families


@dataclass
class DiffAugment:
    """A DSA policy. ``mode='single'``: one family per call, chosen uniformly (DC/DSA/DM).
    ``mode='composite'``: flip, color, one geometric op, cutout (IDC/DREAM, docs/official-code.md §2.3).

    ``shared=True`` draws one parameter set for the whole call (Siamese); otherwise per image.
    """

    strategy: str
    mode: str = "single"
    families: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("single", "composite"):
            raise ValueError(f"unknown augmentation mode {self.mode!r}; allowed: ['composite', 'single']")
        self.families = parse_strategy(self.strategy)

    def _choose_ops(self, gen: torch.Generator) -> list[str]:
        if not self.families:
            return []
        if self.mode == "single":
            pick = int(torch.randint(len(self.families), (1,), generator=gen))
            return list(FAMILIES[self.families[pick]])
        ops: list[str] = []
        if "flip" in self.families:
            ops.append("flip")
        if "color" in self.families:
            ops.extend(FAMILIES["color"])
        geometric = [f for f in self.families if f in GEOMETRIC]
        if geometric:
            ops.append(geometric[int(torch.randint(len(geometric), (1,), generator=gen))])
        if "cutout" in self.families:
            ops.append("cutout")
        return ops

    def sample(self, batch: int, size: int, gen: torch.Generator, shared: bool) -> list[tuple[str, Params]]:
        """Draw the ops to apply and their parameters (n = 1 when shared)."""
        n = 1 if shared else batch
        return [(name, OPS[name].sample(n, size, gen)) for name in self._choose_ops(gen)]

    @staticmethod
    def apply(x: torch.Tensor, plan: Sequence[tuple[str, Params]]) -> torch.Tensor:
        for name, params in plan:
            x = OPS[name].apply(x, params)
        return x

    def __call__(self, x: torch.Tensor, gen: torch.Generator, shared: bool = False) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], x.shape[-1], gen, shared))

    def siamese(self, *batches: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Augment several batches with one shared parameter set (the Siamese property)."""
        plan = self.sample(1, batches[0].shape[-1], gen, shared=True)
        return tuple(self.apply(b, plan) for b in batches)


@dataclass
class DCAugment:
    """DC's own evaluation augmentation (its ``augment`` with ``get_daparam``; used on MNIST only).

    Per image, one op chosen uniformly among ``strategy``'s: crop (pad ``crop`` px with the batch's per-channel
    mean, take a window at offsets 0..2*crop-1), scale (nearest-resize each side by U(1-s, 1+s), centre it on
    a zero canvas, centre-crop) or rotate (an integer angle in [-rotate, rotate), cubic spline with the mean
    of the channel means as fill, centre-crop). Differs from DSA in ranges, interpolation and fill, which is
    why DC's published MNIST numbers need it (docs/provenance.md). Not differentiable; evaluation only.
    """

    strategy: str = "crop_scale_rotate"
    crop: int = 4
    scale: float = 0.2
    rotate: int = 45

    def __post_init__(self) -> None:
        self.ops = tuple(self.strategy.split("_"))
        unknown = sorted(set(self.ops) - {"crop", "scale", "rotate"})
        if unknown:
            raise ValueError(
                f"unknown DC augmentation {unknown[0]!r} in {self.strategy!r}; allowed: crop, scale, rotate"
            )

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augment a batch: every image's op and parameters are drawn first, in the per-image order of DC's loop
        (so the random stream, and the result, are the official per-image loop's), then each op runs once for
        all the images that drew it: on a GPU a per-image loop is thousands of launches and host syncs per epoch."""
        import numpy as np

        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
        h = x.shape[2]
        drawn: dict[str, list[tuple[int, ...]]] = {op: [] for op in self.ops}
        for i in range(x.shape[0]):
            op = self.ops[int(rng.integers(len(self.ops)))]
            if op == "crop":
                drawn[op].append((i, int(rng.integers(2 * self.crop)), int(rng.integers(2 * self.crop))))
            elif op == "scale":  # both sides from the height, as DC's code does
                drawn[op].append((i, *(int(rng.uniform(1 - self.scale, 1 + self.scale) * h) for _ in range(2))))
            else:
                drawn[op].append((i, int(rng.integers(-self.rotate, self.rotate))))
        means = x.mean(dim=(0, 2, 3))
        out = x.clone()
        for op, apply in (("crop", self._crop), ("scale", self._scale), ("rotate", self._rotate)):
            if drawn.get(op):
                index = torch.tensor([d[0] for d in drawn[op]], device=x.device)
                out[index] = apply(x[index], [d[1:] for d in drawn[op]], means)
        return out

    def _crop(self, x: torch.Tensor, offsets: list[tuple[int, ...]], means: torch.Tensor) -> torch.Tensor:
        """Pad with the batch's channel means, then each image's window at its own (row, column) offset."""
        n, channels, h, w = x.shape
        c = self.crop
        canvas = means.view(1, -1, 1, 1).expand(n, channels, h + 2 * c, w + 2 * c).clone()
        canvas[:, :, c : c + h, c : c + w] = x
        start = torch.tensor(offsets, device=x.device)
        return _gather(
            canvas, start[:, :1] + torch.arange(h, device=x.device), start[:, 1:] + torch.arange(w, device=x.device)
        )

    def _scale(self, x: torch.Tensor, sizes: list[tuple[int, ...]], means: torch.Tensor) -> torch.Tensor:
        """Nearest-resize to (sh, sw), centred on a zero canvas, centre-cropped: one gather with per-image maps."""
        h, w = x.shape[-2:]
        sides = [max(sh, sw, h, w) for sh, sw in sizes]
        rows, row_ok = zip(*(_resized_source(h, sh, side) for (sh, _), side in zip(sizes, sides)))
        cols, col_ok = zip(*(_resized_source(w, sw, side) for (_, sw), side in zip(sizes, sides)))
        keep = to_device(torch.stack(row_ok)[:, None, :, None] & torch.stack(col_ok)[:, None, None, :], x.device)
        return _gather(x, to_device(torch.stack(rows), x.device), to_device(torch.stack(cols), x.device)) * keep.to(
            x.dtype
        )

    def _rotate(self, x: torch.Tensor, angles: list[tuple[int, ...]], means: torch.Tensor) -> torch.Tensor:
        """Cubic-spline rotation (scipy, as DC's code), mean fill, centre crop; one copy to the host and back."""
        from scipy.ndimage import rotate as spline_rotate

        h, w = x.shape[-2:]
        fill = float(means.mean())
        turned = []
        for image, (angle,) in zip(x.detach().cpu().numpy(), angles):
            t = spline_rotate(image, angle=angle, axes=(-2, -1), cval=fill)
            top, left = (t.shape[-2] - h) // 2, (t.shape[-1] - w) // 2
            turned.append(torch.as_tensor(t[:, top : top + h, left : left + w]))
        return to_device(torch.stack(turned).to(x.dtype), x.device)


def _gather(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Image i's pixels at rows[i] x cols[i] ((n, h) and (n, w) indices), every channel: (n, C, h, w)."""
    n = len(images)
    return images[torch.arange(n, device=images.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(
        0, 3, 1, 2
    )


@functools.lru_cache(maxsize=None)
def _resized_source(size: int, resized: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output pixel along one axis of DC's scale op: the source pixel (PyTorch's own nearest mapping,
    read off an interpolated ``arange``) and whether it falls inside the resized image (else the zero canvas)."""
    source = F.interpolate(torch.arange(size, dtype=torch.float32).view(1, 1, size, 1), size=[resized, 1])
    source = source.view(-1).long()
    position = torch.arange(size) + (side - size) // 2 - (side - resized) // 2
    inside = (position >= 0) & (position < resized)
    return source[position.clamp(0, resized - 1)], inside


def without(strategy: str, family: str) -> str:
    """The strategy with one family removed (IDC drops 'cutout' wherever CutMix is on)."""
    return "_".join(f for f in parse_strategy(strategy) if f != family)


@dataclass
class CutMixBatch:
    images: torch.Tensor
    labels: torch.Tensor
    partner_labels: torch.Tensor
    ratio: float  # weight of the original labels

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        return self.ratio * F.cross_entropy(logits, self.labels) + (1 - self.ratio) * F.cross_entropy(
            logits, self.partner_labels
        )


def cutmix(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, beta: float = 1.0) -> CutMixBatch:
    """Paste a box from a permuted partner batch; label weight = 1 - clipped box area (docs/official-code.md §2.4)."""
    lam = float(torch.distributions.Beta(beta, beta).sample()) if beta != 1.0 else float(torch.rand(1, generator=gen))
    b, _, h, w = images.shape
    perm = to_device(torch.randperm(b, generator=gen), images.device)
    cut = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(w * cut), int(h * cut)
    cx = int(torch.randint(w, (1,), generator=gen))
    cy = int(torch.randint(h, (1,), generator=gen))
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    mixed = images.clone()
    mixed[:, :, y1:y2, x1:x2] = images[perm, :, y1:y2, x1:x2]
    ratio = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
    return CutMixBatch(mixed, labels, labels[perm], ratio)
