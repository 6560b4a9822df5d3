"""Registry of the distillation / evaluation networks (docs/official-code.md §2.2).

Networks are looked up by name, like timm's ``register_model``: ``create_network("ConvNet-3", 3, 10, 32)``.
Every network is an :class:`EmbeddingNetwork`: a feature extractor followed by one classifier, so the
methods can ask for logits (``forward``), the penultimate embedding (``embed``, used by DM/DREAM) or both from
one pass (``forward_with_features``, used by DREAM+), and know the embedding width (``embed_dim``).

Registered names: ``ConvNet`` (depth kwarg), ``ConvNet-3``, ``ConvNet-4``, ``ResNet-10``, ``ResNetAP-10``,
``DenseNet-121`` (the growth-12 CIFAR DenseNet of IDC/DREAM, not torchvision's), plus the prefix
``timm:<model>`` for any timm model built without pretrained weights.

Deliberate deviations from the official code (see docs/official-code.md §2.2 / 13.9-10):

* ConvNet pads its first conv by 3 whenever the input is 28 px (DC keys this on ``channel == 1``; for the
  datasets in use, 1-channel <=> 28 px, and keying on the size keeps the shape bookkeeping right for any
  channel count).
* ResNet / ResNetAP / DenseNet end with adaptive average pooling instead of a fixed ``AvgPool2d(4)``, so the
  same network runs at 28, 32 and 64 px (identical at 32 px).
* ResNet's ``wide`` variant only has the "small" stem (3x3, stride 1, no max-pool) used for inputs <= 64 px.
* DenseNet takes any input channel count (the official one hard-wires 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from bench.core.registry import Registry, UnknownNameError

ImageSize = int | tuple[int, int]

# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------

# IDC spells norms 'batch'/'instance', DC 'batchnorm'/'instancenorm'; both are accepted everywhere.
_NORM_ALIASES = {"batch": "batchnorm", "instance": "instancenorm", "layer": "layernorm", "group": "groupnorm"}


def _norm(kind: str, channels: int, spatial: tuple[int, int] | None = None) -> nn.Module:
    """Build a 2-d normalisation layer; 'instancenorm' is GroupNorm(C, C) as in DC/IDC (no running stats)."""
    kind = _NORM_ALIASES.get(kind, kind)
    if kind == "layernorm" and spatial is None:
        raise ValueError("layernorm needs the spatial shape; only ConvNet supports it")
    builders: dict[str, Callable[[], nn.Module]] = {
        "batchnorm": lambda: nn.BatchNorm2d(channels),
        "instancenorm": lambda: nn.GroupNorm(channels, channels, affine=True),
        "groupnorm": lambda: nn.GroupNorm(4, channels, affine=True),
        "layernorm": lambda: nn.LayerNorm([channels, *spatial], elementwise_affine=True),  # type: ignore[misc]
        "none": nn.Identity,
    }
    if kind not in builders:
        raise ValueError(f"unknown norm {kind!r}; allowed: {sorted(builders) + sorted(_NORM_ALIASES)}")
    return builders[kind]()


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(negative_slope=0.01),
    "sigmoid": nn.Sigmoid,
}

_POOLS: dict[str, Callable[[], nn.Module]] = {
    "avgpooling": lambda: nn.AvgPool2d(kernel_size=2, stride=2),
    "maxpooling": lambda: nn.MaxPool2d(kernel_size=2, stride=2),
    "none": nn.Identity,
}


def _choose(table: dict[str, Callable[[], nn.Module]], key: str, what: str) -> nn.Module:
    if key not in table:
        raise ValueError(f"unknown {what} {key!r}; allowed: {sorted(table)}")
    return table[key]()


def _pair(size: ImageSize) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class EmbeddingNetwork(nn.Module):
    """A feature extractor (``embed``) followed by one classifier; subclasses define ``embed``.

    Keeping the split explicit lets distribution/feature-matching methods read the penultimate vector and
    the logits from the same forward pass.
    """

    embed_dim: int
    classifier: nn.Module

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the flattened (B, embed_dim) vector that feeds the classifier."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, num_classes) logits."""
        return self.classifier(self.embed(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits, embedding) computed in a single pass."""
        features = self.embed(x)
        return self.classifier(features), features


# --------------------------------------------------------------------------------------------------
# ConvNet (DC networks.py / IDC models/convnet.py)
# --------------------------------------------------------------------------------------------------


class ConvNet(EmbeddingNetwork):
    """DC/IDC ConvNet: ``depth`` x [conv3x3 -> norm -> act -> pool], then one Linear. PyTorch default init."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: ImageSize,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        act: str = "relu",
        pool: str = "avgpooling",
    ) -> None:
        super().__init__()
        height, wide = _pair(image_size)
        self.blocks = nn.ModuleList()
        in_channels = channels
        for d in range(depth):
            # 28 px maps are padded to 32 by the first conv so the shapes match the 32 px bookkeeping.
            padding = 3 if d == 0 and (height, wide) == (28, 28) else 1
            height, wide = height + 2 * padding - 2, wide + 2 * padding - 2
            block = nn.Sequential(
                nn.Conv2d(in_channels, width, kernel_size=3, padding=padding, bias=True),
                _norm(norm, width, (height, wide)),
                _choose(_ACTIVATIONS, act, "activation"),
                _choose(_POOLS, pool, "pooling"),
            )
            if pool != "none":
                height, wide = height // 2, wide // 2
            self.blocks.append(block)
            in_channels = width
        self.embed_dim = width * height * wide
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def block_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return every block's (unflattened) output, for IDC-style layer-wise feature matching."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened output of the last block (2048-d for ConvNet-3 at 32 px)."""
        return self.block_features(x)[-1].flatten(1)


# --------------------------------------------------------------------------------------------------
# ResNet-10 and ResNetAP-10 (IDC models/resnet.py, models/resnet_ap.py)
# --------------------------------------------------------------------------------------------------

_RESNET_WIDTHS = {"cifar": (32, 64, 128, 256), "wide": (64, 128, 256, 512)}


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)


def _downsample_pool(active: bool) -> nn.Module:
    return nn.AvgPool2d(kernel_size=2, stride=2) if active else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual shortcut.

    ``pool_downsample=False``: the first conv is strided and the shortcut is a strided 1x1 conv + norm (ResNet).
    ``pool_downsample=True``: every conv has stride 1; a 2x2 average pool follows the first conv unit and the
    shortcut is 1x1 conv -> 2x2 average pool -> norm (ResNetAP).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str, pool_downsample: bool) -> None:
        super().__init__()
        reduce = stride != 1
        conv_stride = 1 if pool_downsample else stride
        pooled = pool_downsample and reduce
        self.conv1 = _conv(in_channels, out_channels, 3, conv_stride)
        self.norm1 = _norm(norm, out_channels)
        self.pool = _downsample_pool(pooled)
        self.conv2 = _conv(out_channels, out_channels, 3)
        self.norm2 = _norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if reduce or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                _conv(in_channels, out_channels, 1, conv_stride),
                _downsample_pool(pooled),
                _norm(norm, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(EmbeddingNetwork):
    """IDC's 10-layer ResNet: 3x3 stem (no pooling), four one-block stages (strides 1,2,2,2), GAP, Linear.

    ``variant`` picks the widths: 'cifar' 32-64-128-256 (IDC's CIFAR branch) or 'wide' 64-128-256-512 (IDC's
    layout for SVHN/MNIST/Fashion, "small" stem). Conv weights ~ N(0, sqrt(2 / (k*k*out))), norm 1/0.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: ImageSize,
        variant: str = "cifar",
        norm: str = "batch",
        pool_downsample: bool = False,
    ) -> None:
        super().__init__()
        if variant not in _RESNET_WIDTHS:
            raise ValueError(f"unknown ResNet variant {variant!r}; allowed: {sorted(_RESNET_WIDTHS)}")
        widths = _RESNET_WIDTHS[variant]
        self.stem = nn.Sequential(_conv(channels, widths[0], 3), _norm(norm, widths[0]), nn.ReLU(inplace=True))
        in_widths = (widths[0], *widths[:-1])
        strides = (1, 2, 2, 2)
        self.stages = nn.Sequential(
            *(BasicBlock(i, o, s, norm, pool_downsample) for i, o, s in zip(in_widths, widths, strides))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed_dim = widths[-1]
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled output of the last stage."""
        return self.pool(self.stages(self.stem(x))).flatten(1)


# --------------------------------------------------------------------------------------------------
# "DenseNet-121": CIFAR DenseNet with growth rate 12 (IDC models/densenet_cifar.py, kuangliu layout)
# --------------------------------------------------------------------------------------------------


def _bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(in_channels), nn.ReLU(), _conv(in_channels, out_channels, kernel_size)]


class DenseLayer(nn.Module):
    """Bottleneck BN-ReLU-conv1x1(4g)-BN-ReLU-conv3x3(g); its g new maps are concatenated in front of the input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_bn_relu_conv(in_channels, 4 * growth, 1), *_bn_relu_conv(4 * growth, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), x], dim=1)


class DenseNet(EmbeddingNetwork):
    """CIFAR DenseNet: 3x3 stem to 2g maps, dense blocks joined by BN-ReLU-conv1x1-avgpool2 transitions that
    compress by ``reduction``, then BN-ReLU-global-avg-pool-Linear. PyTorch default init."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: ImageSize,
        block_config: Sequence[int] = (6, 12, 24, 16),
        growth: int = 12,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        width = 2 * growth
        layers: list[nn.Module] = [_conv(channels, width, 3)]
        for index, n_layers in enumerate(block_config):
            for _ in range(n_layers):
                layers.append(DenseLayer(width, growth))
                width += growth
            if index < len(block_config) - 1:
                compressed = int(math.floor(width * reduction))
                layers += [*_bn_relu_conv(width, compressed, 1), nn.AvgPool2d(2)]
                width = compressed
        layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        self.features = nn.Sequential(*layers)
        self.embed_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled, BN-ReLU'd output of the last dense block (384-d for the default config)."""
        return self.features(x)


# --------------------------------------------------------------------------------------------------
# timm models
# --------------------------------------------------------------------------------------------------


class TimmNetwork(EmbeddingNetwork):
    """Wrap a timm model so ``embed`` is its pre-logits vector and the logits are its classifier on it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        """The timm head's final layer (kept inside ``model`` so parameters are not registered twice)."""
        return self.model.get_classifier()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_head(forward_features(x), pre_logits=True)``: pooled (and, if the model has one, normed)."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

NetworkFactory = Callable[..., EmbeddingNetwork]  # (channels, num_classes, image_size, **kwargs)
PrefixFactory = Callable[..., EmbeddingNetwork]  # (suffix, channels, num_classes, image_size, **kwargs)


class UnknownNetworkError(UnknownNameError):
    """Raised by :func:`create_network` for a name that is neither registered nor handled by a prefix."""


class UnusableNetworkError(ValueError):
    """A network that exists but cannot be trained on the given images (one-line message)."""


NETWORKS: Registry[NetworkFactory] = Registry("network", UnknownNetworkError)
PREFIXES: Registry[PrefixFactory] = Registry("network prefix", UnknownNetworkError)


def register_network(name: str) -> Callable[[NetworkFactory], NetworkFactory]:
    """Decorator: register ``factory(channels, num_classes, image_size, **kwargs)`` under ``name``."""
    return NETWORKS.register(name)


def list_networks() -> list[str]:
    """Sorted registered names (prefix families such as ``timm:<model>`` are not enumerated)."""
    return sorted(NETWORKS.names())


def unknown_network(name: str, hint: str = "") -> UnknownNetworkError:
    """The one error for a name no network or prefix family answers, listing both."""
    prefixes = "".join(f", {p}<model>" for p in PREFIXES.names())
    return UnknownNetworkError(NETWORKS.unknown_message(name, prefixes + (f" ({hint})" if hint else "")))


def create_network(
    name: str, channels: int, num_classes: int, image_size: ImageSize, **kwargs: object
) -> EmbeddingNetwork:
    """Build network ``name`` for ``channels``-channel, ``image_size``-px inputs and ``num_classes`` outputs.

    ``kwargs`` go to the network (e.g. ``width``/``norm`` for ConvNet, ``variant`` for ResNet-10, timm options).
    """
    if name in NETWORKS:
        return NETWORKS.get(name)(channels, num_classes, image_size, **kwargs)
    for prefix, factory in PREFIXES.items():
        if name.startswith(prefix):
            return factory(name[len(prefix) :], channels, num_classes, image_size, **kwargs)
    raise unknown_network(name)


@dataclass(frozen=True)
class NetworkBuilder:
    """A zero-argument constructor of one network for one data shape; ``cache_key`` names it (for caches of
    trained networks, such as the coresets' feature network)."""

    name: str
    channels: int
    num_classes: int
    image_size: ImageSize
    kwargs: tuple[tuple[str, object], ...] = ()

    def __call__(self) -> EmbeddingNetwork:
        return create_network(self.name, self.channels, self.num_classes, self.image_size, **dict(self.kwargs))

    @property
    def cache_key(self) -> tuple[object, ...]:
        return (self.name, self.channels, self.num_classes, self.image_size, self.kwargs)


@register_network("ConvNet")
def _convnet(channels: int, num_classes: int, image_size: ImageSize, **kwargs: object) -> ConvNet:
    """DC's ConvNet, its depth from the image size (128 channels, instance norm, average pooling)."""
    return ConvNet(channels, num_classes, image_size, **kwargs)  # type: ignore[arg-type]


@register_network("ConvNet-3")
def _convnet3(channels: int, num_classes: int, image_size: ImageSize, **kwargs: object) -> ConvNet:
    """DC's ConvNet with 3 blocks: the paper's distillation and evaluation network."""
    return ConvNet(channels, num_classes, image_size, depth=3, **kwargs)  # type: ignore[arg-type]


@register_network("ConvNet-4")
def _convnet4(channels: int, num_classes: int, image_size: ImageSize, **kwargs: object) -> ConvNet:
    """DC's ConvNet with 4 blocks (for 64x64 images such as TinyImageNet)."""
    return ConvNet(channels, num_classes, image_size, depth=4, **kwargs)  # type: ignore[arg-type]


@register_network("ResNet-10")
def _resnet10(
    channels: int, num_classes: int, image_size: ImageSize, variant: str = "cifar", norm: str = "batch"
) -> ResNet:
    """ResNet-10 with batch norm (Table IV's cross-architecture network)."""
    return ResNet(channels, num_classes, image_size, variant=variant, norm=norm, pool_downsample=False)


@register_network("ResNetAP-10")
def _resnet_ap10(
    channels: int, num_classes: int, image_size: ImageSize, variant: str = "cifar", norm: str = "instance"
) -> ResNet:
    """ResNet-10 with instance norm and average-pool downsampling (IDC's distillation ResNet)."""
    return ResNet(channels, num_classes, image_size, variant=variant, norm=norm, pool_downsample=True)


@register_network("DenseNet-121")
def _densenet121(channels: int, num_classes: int, image_size: ImageSize) -> DenseNet:
    """DenseNet-121 (growth 12), Table IV's evaluation network."""
    return DenseNet(channels, num_classes, image_size, block_config=(6, 12, 24, 16), growth=12, reduction=0.5)


def timm_name_problem(model_name: str) -> tuple[str, str] | None:
    """Why ``timm:<model_name>`` names no network the harness builds, and what to write instead; None if it does.
    The one rule for matrices (checked without building) and for building."""
    import timm  # imported lazily: timm is slow to import and only needed for this family

    anything = "timm:<a name from timm.list_models()>"
    if ":" in model_name or "/" in model_name:  # hf-hub:..., local-dir:...: weights from elsewhere, never loaded
        return "a hub or local path, whose weights the harness never loads", anything
    if "." in model_name:  # timm's 'model.tag' names pretrained weights, which are never loaded here
        return "a '.tag' names pretrained weights, which the harness never loads", f"timm:{model_name.split('.')[0]}"
    if not timm.is_model(model_name):
        return f"timm has no model {model_name!r}", anything
    return None


@PREFIXES.register("timm:")
def _timm_network(
    model_name: str, channels: int, num_classes: int, image_size: ImageSize, **kwargs: object
) -> TimmNetwork:
    """Any timm model, randomly initialised (never downloads weights); ``kwargs`` go to ``timm.create_model``."""
    import timm  # imported lazily: timm is slow to import and only needed for this family

    problem = timm_name_problem(model_name)
    if problem is not None:
        raise unknown_network(f"timm:{model_name}", hint=f"{problem[0]}; write {problem[1]}")
    options = {"pretrained": False, "num_classes": num_classes, "in_chans": channels, **kwargs}
    try:  # models built for one input size (ViT, Swin, ...) take the dataset's; the others have no such option
        model = timm.create_model(model_name, **{"img_size": image_size, **options})
    except TypeError:
        model = timm.create_model(model_name, **options)
    if not isinstance(model.get_classifier(), nn.Module):  # e.g. DeiT's distilled (head, head_dist) pair
        raise UnusableNetworkError(
            f"timm:{model_name} has a two-part (distillation) head, which the harness cannot train; allowed: a timm "
            "model with one classifier"
        )
    return TimmNetwork(model)


def probe_network(name: str, channels: int, num_classes: int, image_size: ImageSize, **kwargs: object) -> None:
    """Build ``name`` and run a batch of two blank images through it, so a network that cannot take the data is
    refused before any work rather than after distilling (UnusableNetworkError, or UnknownNetworkError)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    try:
        net = create_network(name, channels, num_classes, image_size, **kwargs)
        with torch.no_grad():
            net.eval()(torch.zeros(2, channels, height, width))
    except (UnknownNetworkError, UnusableNetworkError):
        raise
    except Exception as err:  # timm's own refusals vary: shape asserts, runtime errors
        why = " ".join(str(err).split())[:160] or type(err).__name__
        raise UnusableNetworkError(
            f"{name} cannot take {height} x {width} images with {channels} channel(s) ({why}); allowed: a "
            "network that accepts them"
        ) from None
