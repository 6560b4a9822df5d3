"""Host-to-GPU copies that do not stall the launch queue.

A plain ``tensor.to('cuda')`` from ordinary host memory makes the host wait until the GPU has finished every
queued kernel (torch copies, then synchronises the stream). The engine draws its random parameters on the host
(so a seed gives the same draws on every device) and copies them over at every step, so each such copy would
be a full stop. Copied from pinned memory instead, the transfer is queued like a kernel and the values are
the same.
"""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``; from the CPU to a CUDA device through pinned memory, without a host sync."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
