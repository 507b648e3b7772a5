"""Tensor preprocessing of video clips, driven by a backbone's declared input contract.

The order of operations follows torchvision's ``VideoClassification`` preset (the S3D weights'
``transforms()``): resize the uint8 frames, crop, convert to float in [0, 1], normalise. A contract is
a plain dict, stored verbatim in the cache manifest::

    {"resize": "short_side" | "square", "resize_size": 256, "crop_size": 224,
     "interpolation": "bilinear", "antialias": bool, "mean": [..], "std": [..]}
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from extractors.crops import take_crops


def resize_frames(frames: torch.Tensor, contract: dict[str, Any]) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` frames as the contract says (short side, or both sides, to ``resize_size``)."""
    size = contract["resize_size"]
    target = [size] if contract["resize"] == "short_side" else [size, size]
    return TF.resize(
        frames,
        target,
        interpolation=InterpolationMode(contract["interpolation"]),
        antialias=contract["antialias"],
    )


def preprocess_clips(frames: torch.Tensor, contract: dict[str, Any], crops: int) -> torch.Tensor:
    """uint8 ``[N, F, H, W, 3]`` -> float ``[crops, N, 3, F, crop, crop]`` normalised per the contract."""
    n, f, h, w, c = frames.shape
    flat = frames.permute(0, 1, 4, 2, 3).reshape(n * f, c, h, w)
    resized = resize_frames(flat, contract)
    cropped = take_crops(resized, contract["crop_size"], crops)  # [crops, N*F, 3, s, s]
    scaled = cropped.float() / 255.0
    mean = torch.tensor(contract["mean"], device=scaled.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(contract["std"], device=scaled.device).view(1, 1, 3, 1, 1)
    normalised = (scaled - mean) / std
    size = contract["crop_size"]
    return normalised.view(crops, n, f, c, size, size).permute(0, 1, 3, 2, 4, 5)
