"""Shared test helpers."""

import torch


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Bit-identical on CPU (the promise); on a GPU, some cuDNN/atomic kernels are not deterministic, so
    runs agree only to float tolerance there."""
    if torch.cuda.is_available():
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    else:
        assert torch.equal(a, b)
