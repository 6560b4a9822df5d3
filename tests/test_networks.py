"""Tests for bench.learning.networks: the registry and the shape/semantics contract of every network
(docs/official-code.md §2.2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from bench.learning import networks
from bench.learning.networks import UnknownNetworkError, create_network, list_networks

BATCH = 2
NUM_CLASSES = 5
TIMM_EXAMPLE = "timm:resnet18"
ALL_NETWORKS = [*list_networks(), TIMM_EXAMPLE]


def _images(channels: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_registered_names() -> None:
    assert list_networks() == ["ConvNet", "ConvNet-3", "ConvNet-4", "DenseNet-121", "ResNet-10", "ResNetAP-10"]


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ALL_NETWORKS)
def test_output_shapes(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    net = create_network(name, channels, NUM_CLASSES, size)
    assert isinstance(net.embed_dim, int)
    x = _images(channels, size)
    with torch.no_grad():
        assert net(x).shape == (BATCH, NUM_CLASSES)
        assert net.embed(x).shape == (BATCH, net.embed_dim)


@pytest.mark.parametrize("name", ALL_NETWORKS)
def test_forward_with_features_matches_forward_and_embed(name: str) -> None:
    torch.manual_seed(0)
    net = create_network(name, 3, NUM_CLASSES, 32).eval()
    x = _images(3, 32)
    with torch.no_grad():
        logits, features = net.forward_with_features(x)
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(features, net.embed(x))
        torch.testing.assert_close(logits, net.classifier(features))


@pytest.mark.parametrize(("name", "size"), [("ConvNet-3", 32), ("ConvNet-4", 64), ("ConvNet", 32)])
def test_convnet_embed_dim_is_2048(name: str, size: int) -> None:
    assert create_network(name, 3, 10, size).embed_dim == 128 * 4 * 4


def test_convnet_28px_is_padded_to_32px() -> None:
    net = create_network("ConvNet-3", 1, 10, 28)
    assert net.blocks[0][0].padding == (3, 3)
    assert all(block[0].padding == (1, 1) for block in net.blocks[1:])
    assert net.embed_dim == 2048
    assert create_network("ConvNet-3", 1, 10, 32).blocks[0][0].padding == (1, 1)


def test_convnet_depth_kwarg_and_block_features() -> None:
    net = create_network("ConvNet", 3, 10, 32, depth=2, width=16)
    with torch.no_grad():
        feats = net.block_features(_images(3, 32))
    assert [tuple(f.shape) for f in feats] == [(BATCH, 16, 16, 16), (BATCH, 16, 8, 8)]
    assert net.embed_dim == 16 * 8 * 8


def test_convnet_instancenorm_is_groupnorm_per_channel_without_running_stats() -> None:
    torch.manual_seed(0)
    net = create_network("ConvNet-3", 3, 10, 32)
    norms = [block[1] for block in net.blocks]
    assert all(isinstance(n, nn.GroupNorm) and n.num_groups == n.num_channels == 128 and n.affine for n in norms)
    x = _images(3, 32)
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("norm", "layer"),
    [("batchnorm", nn.BatchNorm2d), ("layernorm", nn.LayerNorm), ("groupnorm", nn.GroupNorm), ("none", nn.Identity)],
)
def test_convnet_other_norms(norm: str, layer: type[nn.Module]) -> None:
    net = create_network("ConvNet-3", 1, 10, 28, width=8, norm=norm)
    assert all(isinstance(block[1], layer) for block in net.blocks)
    if norm == "groupnorm":
        assert net.blocks[0][1].num_groups == 4
    if norm == "layernorm":  # normalised over C x H x W of the (28 -> 32 padded) conv output
        assert [tuple(block[1].normalized_shape) for block in net.blocks] == [(8, 32, 32), (8, 16, 16), (8, 8, 8)]
    with torch.no_grad():
        assert net(_images(1, 28)).shape == (BATCH, 10)


@pytest.mark.parametrize(("variant", "width"), [("cifar", 256), ("wide", 512)])
def test_resnet10_variant_widths(variant: str, width: int) -> None:
    net = create_network("ResNet-10", 3, 10, 32, variant=variant)
    assert net.embed_dim == width and net.classifier.in_features == width
    first = 32 if variant == "cifar" else 64
    stem = net.stem[0]
    assert (stem.out_channels, stem.stride, stem.bias) == (first, (1, 1), None)
    assert len(net.stages) == 4  # one BasicBlock per stage: 1 + 4 * 2 + 1 = 10 layers


def test_resnet10_is_batchnorm_strided_with_he_init() -> None:
    torch.manual_seed(0)
    net = create_network("ResNet-10", 3, 10, 32)
    assert not any(isinstance(m, (nn.GroupNorm, nn.AvgPool2d)) for m in net.modules())
    assert [block.conv1.stride for block in net.stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert isinstance(net.stages[0].shortcut, nn.Identity)  # same shape: identity shortcut
    assert net.stages[1].shortcut[0].stride == (2, 2)
    conv = net.stages[3].conv2  # 256 x 256 x 3 x 3 weights: a tight std estimate
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (3 * 3 * 256)), rel=0.02)
    bn = net.stages[3].norm2
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_resnet_ap10_pools_instead_of_striding() -> None:
    net = create_network("ResNetAP-10", 3, 10, 32)
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(isinstance(n, nn.GroupNorm) and n.num_groups == n.num_channels for n in norms)
    shortcut = net.stages[1].shortcut
    assert [type(m) for m in shortcut] == [nn.Conv2d, nn.AvgPool2d, nn.GroupNorm]
    assert isinstance(net.stages[1].pool, nn.AvgPool2d) and isinstance(net.stages[0].pool, nn.Identity)
    assert net.embed_dim == 256


def test_densenet121_is_growth12_cifar_layout() -> None:
    net = create_network("DenseNet-121", 1, 10, 32)
    assert net.features[0].in_channels == 1 and net.features[0].out_channels == 24
    dense = [m for m in net.modules() if isinstance(m, networks.DenseLayer)]
    assert len(dense) == 6 + 12 + 24 + 16
    assert dense[0].body[2].out_channels == 48 and dense[0].body[5].out_channels == 12
    # 24 +6g=96 -> 48, +12g=192 -> 96, +24g=384 -> 192, +16g=384
    assert net.embed_dim == 384


def test_timm_wrapper_uses_pre_logits_and_model_head() -> None:
    torch.manual_seed(0)
    net = create_network(TIMM_EXAMPLE, 1, 7, 32).eval()
    x = _images(1, 32)
    with torch.no_grad():
        expected = net.model.forward_head(net.model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(net.embed(x), expected)
        torch.testing.assert_close(net(x), net.model(x))
    assert net.embed_dim == 512
    assert len(net.state_dict()) == len(net.model.state_dict())  # head is not registered twice


@pytest.mark.parametrize("bad", ["ConvNet-5", "timm:no_such_model_xyz"])
def test_unknown_name_error_lists_allowed_names(bad: str) -> None:
    with pytest.raises(UnknownNetworkError) as info:
        create_network(bad, 3, 10, 32)
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert bad in message and "timm:" in message
    assert all(name in message for name in list_networks())


def test_register_network_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(networks.NETWORKS, "_entries", dict(networks.NETWORKS._entries))

    @networks.register_network("Tiny")
    def _tiny(channels: int, num_classes: int, image_size: int, width: int = 4) -> networks.ConvNet:
        return networks.ConvNet(channels, num_classes, image_size, width=width, depth=1)

    assert "Tiny" in list_networks()
    assert create_network("Tiny", 3, 10, 8, width=2).embed_dim == 2 * 4 * 4
    with pytest.raises(ValueError):
        networks.register_network("Tiny")(_tiny)
