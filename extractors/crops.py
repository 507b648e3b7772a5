"""Spatial views of resized frames, stored as the leading crop axis of every feature array.

Crop modes: ``1`` (centre), ``5`` (centre + corners), ``10`` (those 5 and their horizontal flips), and
``"full"``: the whole frame, resized so its short side is the backbone's crop size and not cropped (one
view; for fully convolutional backbones, which then see the frame's edges too). Crop order (index on the
crop axis): 0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right, then 5-9 the same five
crops of the horizontally flipped frame. The centre crop is always index 0, so a single-crop reading of a
10-crop cache is ``features[0]``.
"""

from __future__ import annotations

from typing import Literal

import torch

CropMode = int | Literal["full"]
CROP_MODES: tuple[CropMode, ...] = (1, 5, 10, "full")


def crop_count(mode: CropMode) -> int:
    """How many views a crop mode gives (the length of the features' crop axis)."""
    return 1 if mode == "full" else int(mode)


def parse_crop_mode(text: str | int) -> CropMode:
    """``"1" | "5" | "10" | "full"`` (or an int) -> a crop mode; anything else raises ValueError."""
    mode = "full" if str(text).strip().lower() == "full" else int(str(text).strip())
    if mode not in CROP_MODES:
        raise ValueError(f"crops must be one of 1, 5, 10, full; got {text!r}")
    return mode


def crop_origins(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners ``(top, left)`` of the first ``min(crops, 5)`` crops of a ``height x width`` frame."""
    if crops not in (1, 5, 10):
        raise ValueError(f"crops must be one of 1, 5, 10, got {crops}")
    if height < size or width < size:
        raise ValueError(f"a {size}x{size} crop does not fit in a {height}x{width} frame")
    # Same rounding as torchvision's center_crop, so the single-crop case matches library transforms.
    centre = (int(round((height - size) / 2.0)), int(round((width - size) / 2.0)))
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
    return ([centre] + corners)[: min(crops, 5)]


def take_crops(frames: torch.Tensor, size: int, crops: int) -> torch.Tensor:
    """Crops of ``frames [..., H, W]`` -> ``[crops, ..., size, size]`` in the documented order."""
    height, width = frames.shape[-2:]
    views = [
        frames[..., top : top + size, left : left + size] for top, left in crop_origins(height, width, size, crops)
    ]
    if crops == 10:
        views += [view.flip(-1) for view in views]
    return torch.stack(views)
