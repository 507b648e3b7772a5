"""Spatial crops of resized frames, stored as the leading crop axis of every feature array.

Crop order (index on the crop axis): 0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right,
then 5-9 the same five crops of the horizontally flipped frame. The centre crop is always index 0, so a
single-crop reading of a 10-crop cache is ``features[0]``.
"""

from __future__ import annotations

import torch

CROP_COUNTS = (1, 5, 10)


def crop_origins(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners ``(top, left)`` of the first ``min(crops, 5)`` crops of a ``height x width`` frame."""
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
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
