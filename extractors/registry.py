"""One registry of feature backbones, timm-style: ``register_backbone``, ``create_backbone``, ``list_backbones``.

Every backbone is a :class:`Backbone`: it declares its input contract and feature width, preprocesses
decoded uint8 frames exactly as its reference implementation does, and maps a batch of clips to
features ``[B, D]``. Its weights are declared as data (:class:`WeightsSpec`) next to the builder.
Tiny variants for tests are registered like real ones and share the real classes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dakd.errors import DakdError

log = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class WeightsSpec:
    """Where a backbone's pretrained weights come from and how to get them.

    ``file_name`` is the name in the dakd weights cache; ``sha256`` the checksum of that file when it
    is known in advance (or its first hex digits); ``download`` fetches the file into a folder with the
    library's standard mechanism and returns its path; ``known_locations`` lists other caches the
    library itself uses; ``importer`` converts a user-supplied file into the cache (default: a copy);
    ``download_host`` is probed before downloading, so an offline machine fails in seconds, not after
    the library's retries.
    """

    file_name: str
    source: str
    license: str
    instructions: str
    sha256: str | None = None
    download: Callable[[Path], Path] | None = None
    known_locations: Callable[[], list[Path]] = field(default=lambda: [])
    importer: Callable[[Path], Path] | None = None
    download_host: str | None = None


class Backbone(nn.Module):
    """A feature extractor: ``preprocess`` uint8 frames, then ``forward`` clips ``[B, ...] -> [B, D]``.

    Subclasses set ``feature_dim`` and ``input_contract`` (a JSON-able description of clip length,
    resize and crop rule, value range and normalisation, stored in every cache manifest).
    """

    feature_dim: int
    input_contract: dict[str, Any]
    # 3D CNNs run about 1.5x faster on CPU in channels_last_3d; extraction converts weights and inputs.
    memory_format: torch.memory_format = torch.contiguous_format

    def frame_offsets(self, snippet_frames: int) -> list[int]:
        """Positions within a snippet of the frames this backbone consumes (default: all of them)."""
        return list(range(snippet_frames))

    def preprocess(self, frames: torch.Tensor, crops: int) -> torch.Tensor:
        """``frames`` uint8 ``[N, F, H, W, 3]`` (the consumed frames of N snippets) -> ``[crops, N, ...]``."""
        raise NotImplementedError

    def load_weights(self, path: Path) -> None:
        """Load pretrained weights from a file in the format of ``WeightsSpec``; never executes pickled code."""
        raise NotImplementedError


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    builder: Callable[..., Backbone]
    weights: WeightsSpec | None
    summary: str
    test_variant: bool


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(
    name: str, *, weights: WeightsSpec | None, summary: str, test_variant: bool = False
) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator that registers a builder returning a randomly initialised :class:`Backbone`."""

    def decorate(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            log.warning("backbone %r registered twice; the later registration wins", name)
        _REGISTRY[name] = BackboneEntry(name, builder, weights, summary, test_variant)
        return builder

    return decorate


def _load_builtin_backbones() -> None:
    # Importing the modules runs their @register_backbone decorators.
    from extractors.backbones import clip, i3d, i3d_r50, s3d  # noqa: F401


def list_backbones(include_test_variants: bool = False) -> list[str]:
    _load_builtin_backbones()
    return sorted(name for name, entry in _REGISTRY.items() if include_test_variants or not entry.test_variant)


def backbone_entry(name: str) -> BackboneEntry:
    _load_builtin_backbones()
    if name not in _REGISTRY:
        known = ", ".join(list_backbones())
        raise DakdError(f"unknown backbone {name!r}; known backbones: {known}")
    return _REGISTRY[name]


def build_random(name: str, **options: Any) -> Backbone:
    """Build ``name`` with deterministic random weights (the same in every process), in eval mode.

    ``options`` are the builder's keyword arguments (e.g. ``frames`` for CLIP).
    """
    entry = backbone_entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        try:
            model = entry.builder(**options)
        except TypeError as error:
            raise DakdError(f"backbone {name!r} does not take options {sorted(options)} ({error})") from None
    return model.eval()


def state_dict_sha256(model: nn.Module) -> str:
    """Checksum of a model's parameters and buffers, independent of how they would be serialised."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()).tobytes())
    return digest.hexdigest()
