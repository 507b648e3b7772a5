"""I3D-ResNet50 from pytorchvideo (the RTFM feature family), 2048-d, with pytorchvideo's Kinetics weights.

Features are the res5 output averaged over time and space (the input of the Kinetics head).
Preprocessing follows pytorchvideo's Kinetics recipe: short side 256 (bilinear, no antialias, as its
``ShortSideScale``), crop 224, float in [0, 1], mean 0.45, std 0.225.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch

from dakd import paths
from extractors.registry import Backbone, InputContract, WeightsSpec, register_backbone

URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/I3D_8x8_R50.pyth"
FILE_NAME = Path(URL).name


class I3DResNet50(Backbone):
    """pytorchvideo ``i3d_r50``; input ``[B, 3, T, 224, 224]`` normalised; output ``[B, 2048]``."""

    def __init__(self, contract: InputContract):
        super().__init__()
        from pytorchvideo.models.hub import i3d_r50

        self.model = i3d_r50(pretrained=False)
        self.feature_dim = 2048
        self.contract = contract

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.model.blocks[:-1]:  # all but the Kinetics head
            x = block(x)
        return x.mean(dim=(2, 3, 4))

    memory_format = torch.channels_last_3d

    def load_weights(self, path: Path) -> None:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        # pytorchvideo's .pyth files hold {"model_state": ...}; a bare state dict is accepted too.
        self.model.load_state_dict(checkpoint.get("model_state", checkpoint))


def _download(folder: Path) -> Path:
    target = folder / FILE_NAME
    folder.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(URL, str(target))
    return target


@register_backbone(
    "i3d_r50",
    # pytorchvideo's Kinetics recipe: ShortSideScale (bilinear, no antialias), crop 224, mean 0.45, std 0.225.
    contract=InputContract(
        frames="all",
        resize="short_side",
        resize_size=256,
        crop_size=224,
        interpolation="bilinear",
        antialias=False,
        resize_kernel="uint8",
        value_range=(0.0, 1.0),
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
    ),
    weights=WeightsSpec(
        file_name=FILE_NAME,
        source=URL,
        license="Apache-2.0 (pytorchvideo); trained on Kinetics-400",
        instructions=f"run once online (downloads {URL}), or copy that file and run "
        f"`dakd weights import i3d_r50 {FILE_NAME}`",
        download=_download,
        download_host=urlparse(URL).netloc,
        known_locations=lambda: [paths.torch_hub_checkpoints() / FILE_NAME],
    ),
    summary="pytorchvideo I3D-ResNet50, Kinetics-400, average-pooled res5, 2048-d (RTFM family)",
)
def i3d_r50(contract: InputContract) -> I3DResNet50:
    return I3DResNet50(contract)
