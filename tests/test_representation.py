"""IDC multi-formation decode and 'mix' tiling against hand-built examples (docs/official-code.md §6.1, 6.2)."""

import torch

from methods.representation import decode, tile


def test_decode_factor_two_by_hand():
    # one 1-channel 4x4 image whose four 2x2 quadrants are constant 1, 2, 3, 4
    img = torch.tensor([[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]).view(1, 1, 4, 4)
    out = decode(img, 2)
    assert out.shape == (4, 1, 4, 4)
    for k, value in enumerate([1.0, 2.0, 3.0, 4.0]):  # patch-position-major order
        assert torch.allclose(out[k], torch.full((1, 4, 4), value))


def test_decode_order_is_patch_major_over_images():
    a = torch.zeros(1, 1, 4, 4)
    b = torch.ones(1, 1, 4, 4)
    a[..., :2, 2:] = 5.0  # patch (0,1) of image a
    out = decode(torch.cat([a, b]), 2)
    assert out.shape == (8, 1, 4, 4)
    assert torch.allclose(out[0], torch.zeros(1, 4, 4)) and torch.allclose(out[1], torch.ones(1, 4, 4))
    assert torch.allclose(out[2], torch.full((1, 4, 4), 5.0))  # images' patch (0,1) comes after all patch (0,0)


def test_decode_pads_with_half_when_not_divisible():
    img = torch.zeros(1, 1, 5, 5)
    out = decode(img, 2)  # padded to 6x6 with 0.5, patches 3x3
    assert out.shape == (4, 1, 5, 5)
    assert out[3].max() > 0.0  # bottom-right patch contains padding
    assert torch.allclose(out[0], torch.zeros(1, 5, 5))


def test_decode_bilinear_upsampling_matches_torch():
    img = torch.rand(2, 3, 8, 8)
    out = decode(img, 2)
    expected = torch.nn.functional.interpolate(img[:, :, 4:, :4], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(out[4:6], expected)


def test_tile_places_real_image_k_times_ipc_plus_i_in_patch_k():
    ipc, f = 2, 2
    real = torch.arange(ipc * f * f, dtype=torch.float).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    stored = tile(real, ipc, f)
    assert stored.shape == (2, 1, 4, 4)
    for i in range(ipc):
        for k in range(f * f):
            r, c = divmod(k, f)
            assert torch.all(stored[i, 0, r * 2 : r * 2 + 2, c * 2 : c * 2 + 2] == k * ipc + i)
    # and decoding a tiled image gives back the (shrunk) sources
    decoded = decode(stored, f)
    assert torch.allclose(decoded, real)
