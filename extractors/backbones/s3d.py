"""S3D (Xie et al., ECCV 2018) from torchvision with ``S3D_Weights.KINETICS400_V1``: 1024-d features.

Features are the output of ``features`` averaged over time and space, i.e. the input of the Kinetics
classifier. Preprocessing is that of ``S3D_Weights.KINETICS400_V1.transforms()``: both sides resized to
256 (bilinear, no antialias), centre crop 224, float in [0, 1], Kinetics mean/std.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models.video import S3D_Weights, s3d

from dakd import paths
from extractors.registry import Backbone, InputContract, WeightsSpec, register_backbone

KINETICS_WEIGHTS = S3D_Weights.KINETICS400_V1
FILE_NAME = Path(KINETICS_WEIGHTS.url).name  # s3d-d76dad2f.pth; torchvision's hash prefix is in the name
_PRESET = KINETICS_WEIGHTS.transforms()
S3D_CONTRACT = InputContract(
    frames="all",
    resize="square",
    resize_size=_PRESET.resize_size[0],
    crop_size=_PRESET.crop_size[0],
    interpolation=_PRESET.interpolation.value,
    antialias=False,  # as the preset, see torchvision PR 7160
    resize_kernel="float",
    value_range=(0.0, 1.0),
    mean=tuple(_PRESET.mean),
    std=tuple(_PRESET.std),
)


class S3DBackbone(Backbone):
    """torchvision S3D; input ``[B, 3, T, 224, 224]`` normalised; output ``[B, 1024]``."""

    def __init__(self, contract: InputContract):
        super().__init__()
        self.model = s3d(weights=None)
        self.feature_dim = 1024
        self.contract = contract

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x).mean(dim=(2, 3, 4))

    memory_format = torch.channels_last_3d

    def load_weights(self, path: Path) -> None:
        self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _download(folder: Path) -> Path:
    target = folder / FILE_NAME
    folder.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(KINETICS_WEIGHTS.url, str(target), hash_prefix=FILE_NAME.split("-")[1][:8])
    return target


@register_backbone(
    "s3d",
    contract=S3D_CONTRACT,
    weights=WeightsSpec(
        file_name=FILE_NAME,
        source=KINETICS_WEIGHTS.url,
        license="BSD-3-Clause (torchvision); trained on Kinetics-400",
        instructions=f"run once online (downloads {KINETICS_WEIGHTS.url}), or copy that file and run "
        f"`dakd weights import s3d {FILE_NAME}`",
        sha256=FILE_NAME.split("-")[1][:8],
        download=_download,
        download_host=urlparse(KINETICS_WEIGHTS.url).netloc,
        known_locations=lambda: [paths.torch_hub_checkpoints() / FILE_NAME],
    ),
    summary="torchvision S3D, Kinetics-400, average-pooled features, 1024-d",
)
def s3d_backbone(contract: InputContract) -> S3DBackbone:
    return S3DBackbone(contract)
