"""DSA primitives against the official formulas (docs/official-code.md §2.3), the Siamese property, and CutMix."""

import math

import pytest
import torch

from bench.data.augment import OPS, DiffAugment, cutmix, parse_strategy, without
from bench.data.loaders import load_dataset


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    data = load_dataset("digits")
    x = data.normalize(data.train_images[:4])
    return torch.cat([x, x.flip(2)], 1)  # 2 channels so the channel mean matters


def test_brightness_adds_u_minus_half(batch):
    u = torch.tensor([0.1, 0.9, 0.5, 0.0])
    out = OPS["brightness"].apply(batch, {"u": u})
    assert torch.allclose(out, batch + (u - 0.5).view(-1, 1, 1, 1))


def test_saturation_scales_around_pixel_channel_mean(batch):
    u = torch.tensor([0.25, 0.5, 0.75, 1.0])
    m = batch.mean(1, keepdim=True)
    out = OPS["saturation"].apply(batch, {"u": u})
    assert torch.allclose(out, m + (batch - m) * (2 * u).view(-1, 1, 1, 1), atol=1e-6)


def test_contrast_scales_around_image_mean(batch):
    u = torch.tensor([0.0, 0.3, 0.6, 1.0])
    m = batch.mean([1, 2, 3], keepdim=True)
    out = OPS["contrast"].apply(batch, {"u": u})
    assert torch.allclose(out, m + (batch - m) * (u + 0.5).view(-1, 1, 1, 1), atol=1e-6)


def test_crop_translates_with_zero_fill(batch):
    out = OPS["crop"].apply(batch, {"tx": torch.tensor([2]), "ty": torch.tensor([-1])})
    # out[i, j] = in[i + 2, j - 1]; rows past the bottom and the first column come from outside -> 0
    assert torch.allclose(out[:, :, :-2, 1:], batch[:, :, 2:, :-1])
    assert (out[:, :, -2:, :] == 0).all() and (out[:, :, :, 0] == 0).all()


def test_crop_shift_range_is_one_eighth_of_the_side():
    gen = torch.Generator().manual_seed(0)
    params = OPS["crop"].sample(4000, 32, gen)
    assert int(params["tx"].min()) == -4 and int(params["tx"].max()) == 4


def test_cutout_zeroes_a_half_side_square_clipped_at_border(batch):
    h = batch.shape[-1]  # 16 px -> side 8
    out = OPS["cutout"].apply(batch, {"ox": torch.tensor([0]), "oy": torch.tensor([8])})
    zero = out == 0
    assert zero[:, :, :4, 4:12].all()  # rows [-4, 4) clipped to [0, 4), cols [4, 12)
    expected = batch.clone()
    expected[:, :, :4, 4:12] = 0
    assert torch.equal(out, expected)
    assert h == 16


def test_flip_only_when_u_below_half(batch):
    out = OPS["flip"].apply(batch, {"u": torch.tensor([0.2, 0.7, 0.49, 0.5])})
    assert torch.equal(out[0], batch[0].flip(2)) and torch.equal(out[2], batch[2].flip(2))
    assert torch.equal(out[1], batch[1]) and torch.equal(out[3], batch[3])


def test_scale_identity_and_rotation_zero_are_no_ops(batch):
    one = torch.ones(1)
    assert torch.allclose(OPS["scale"].apply(batch, {"sx": one, "sy": one}), batch, atol=1e-5)
    assert torch.allclose(OPS["rotate"].apply(batch, {"angle": torch.zeros(1)}), batch, atol=1e-5)


def test_rotate_90_degrees_turns_the_image(batch):
    out = OPS["rotate"].apply(batch, {"angle": torch.tensor([math.pi / 2])})
    assert torch.allclose(out, batch.rot90(1, dims=(2, 3)), atol=1e-4) or torch.allclose(
        out, batch.rot90(-1, dims=(2, 3)), atol=1e-4
    )


def test_scale_and_rotate_draw_within_strength():
    gen = torch.Generator().manual_seed(1)
    s = OPS["scale"].sample(2000, 32, gen)
    r = OPS["rotate"].sample(2000, 32, gen)
    assert s["sx"].min() >= 1 / 1.2 and s["sx"].max() <= 1.2
    assert r["angle"].abs().max() <= 15 / 180 * math.pi


def test_siamese_applies_identical_parameters_to_real_and_synthetic(batch):
    aug = DiffAugment("color_crop_cutout_flip_scale_rotate", "single")
    for seed in range(12):
        real, syn = aug.siamese(batch, batch.clone(), gen=torch.Generator().manual_seed(seed))
        assert torch.equal(real, syn)
        # shared parameters: identical images inside one batch stay identical too
        twins, _ = aug.siamese(batch[:1].repeat(3, 1, 1, 1), batch[:1], gen=torch.Generator().manual_seed(seed))
        assert torch.equal(twins[0], twins[2])


def test_per_image_parameters_differ_across_the_batch(batch):
    aug = DiffAugment("color", "single")
    same = batch[:1].repeat(8, 1, 1, 1)
    out = aug(same, torch.Generator().manual_seed(0), shared=False)
    assert not torch.allclose(out[0], out[1])


def test_single_mode_picks_one_family_composite_applies_all():
    gen = torch.Generator().manual_seed(0)
    single = DiffAugment("color_crop_cutout", "single")
    composite = DiffAugment("color_crop_cutout", "composite")
    assert {len(single._choose_ops(gen)) for _ in range(50)} == {1, 3}  # color = 3 ops, others 1
    assert composite._choose_ops(gen) == ["brightness", "saturation", "contrast", "crop", "cutout"]


def test_unknown_family_is_rejected_with_allowed_names():
    with pytest.raises(ValueError, match="allowed"):
        parse_strategy("color_blur")
    assert without("color_crop_cutout_flip", "cutout") == "color_crop_flip"


def test_cutmix_label_weight_is_one_minus_box_area(batch):
    labels = torch.arange(len(batch))
    mixed = cutmix(batch, labels, torch.Generator().manual_seed(3))
    changed = (mixed.images != batch).any(1)  # pixels taken from the partner
    area = changed.float().mean(dim=(1, 2)).max()
    assert 0.0 <= mixed.ratio <= 1.0
    assert float(area) <= 1 - mixed.ratio + 1e-6
    assert sorted(mixed.partner_labels.tolist()) == labels.tolist()
