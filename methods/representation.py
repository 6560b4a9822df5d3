"""IDC multi-formation: one stored image decodes into f*f training images (docs/official-code.md §6.1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def usable_factors(side: int) -> list[int]:
    """The decode factors for ``side``-px images that give no patch made only of padding: a factor that does not
    divide the side pads it with 0.5, and from some factors on whole rows of patches lie in the padding."""
    return [f for f in range(1, side + 1) if (f - 1) * math.ceil(side / f) < side]


def decode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Cut each image into an f x f grid of patches and upsample each back to full size.

    Output order is patch-position-major (all images' patch (0,0), then (0,1), ...) as in IDC's
    ``decode_zoom``; a side not divisible by f is padded right/bottom with 0.5.
    """
    if factor == 1:
        return images
    _, _, h, w = images.shape
    side_h, side_w = math.ceil(h / factor), math.ceil(w / factor)
    padded = F.pad(images, [0, side_w * factor - w, 0, side_h * factor - h], value=0.5)
    patches = [
        padded[:, :, i * side_h : (i + 1) * side_h, j * side_w : (j + 1) * side_w]
        for i in range(factor)
        for j in range(factor)
    ]
    stacked = torch.cat(patches)
    return F.interpolate(stacked, size=(h, w), mode="bilinear", align_corners=False)


def tile(real: torch.Tensor, ipc: int, factor: int) -> torch.Tensor:
    """IDC 'mix' tiling: patch k of stored image i <- real image k*ipc + i, shrunk (nearest) to patch size.

    ``real`` holds ipc * f^2 images of one class; returns ipc stored images.
    """
    if factor == 1:
        return real[:ipc].clone()
    n, c, h, w = real.shape
    if n < ipc * factor**2:
        raise ValueError(f"tiling needs {ipc * factor**2} images, got {n}")
    side_h, side_w = math.ceil(h / factor), math.ceil(w / factor)
    small = F.interpolate(real, size=(side_h, side_w), mode="nearest")
    out = torch.full((ipc, c, side_h * factor, side_w * factor), 0.5, dtype=real.dtype)
    for k in range(factor**2):
        i, j = divmod(k, factor)
        out[:, :, i * side_h : (i + 1) * side_h, j * side_w : (j + 1) * side_w] = small[k * ipc : (k + 1) * ipc]
    return out[:, :, :h, :w]
