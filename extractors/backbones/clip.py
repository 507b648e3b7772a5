"""CLIP image embeddings (open_clip ``ViT-B-16`` with the ``openai`` weights), 512-d.

Each snippet is represented by its centre frame, or by the mean embedding of ``frames`` evenly spaced
frames. Preprocessing is open_clip's own for these weights: PIL bicubic resize of the short side to
224, centre crop 224 (or the 5/10 crops), ``ToTensor``, OpenAI mean/std. The embedding is
``encode_image`` without L2 normalisation. The OpenAI weights use QuickGELU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from extractors.crops import CropMode, take_crops
from extractors.registry import Backbone, InputContract, WeightsSpec, register_backbone

MODEL_NAME = "ViT-B-16"
PRETRAINED_TAG = "openai"
HF_REPO = "timm/vit_base_patch16_clip_224.openai"
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenClipImage(Backbone):
    """The image tower of an open_clip CLIP model; input ``[B, k, 3, S, S]``; output ``[B, embed_dim]``."""

    clip_layout = None  # preprocessed through PIL (see preprocess)

    def __init__(self, model_config: dict[str, Any], contract: InputContract, frames: int = 1):
        super().__init__()
        from open_clip.model import CLIP

        if frames < 1:
            raise ValueError(f"clip frames per snippet must be >= 1, got {frames}")
        self.visual = CLIP(**model_config).visual  # the text tower is never used
        self.frames = frames
        self.feature_dim = model_config["embed_dim"]
        self.contract = dataclasses.replace(
            contract, frames="centre" if frames == 1 else f"mean of {frames} evenly spaced"
        )

    def frame_offsets(self, snippet_frames: int) -> list[int]:
        return [int((index + 0.5) * snippet_frames / self.frames) for index in range(self.frames)]

    def preprocess(self, frames: torch.Tensor, crops: CropMode) -> torch.Tensor:
        """uint8 ``[N, k, H, W, C]`` (RGB first) -> ``[views, N, k, 3, S, S]``, frame by frame through PIL as open_clip.

        The ViT takes S x S images only, so the ``full`` mode squeezes the whole frame to S x S.
        """
        size = self.contract.crop_size
        n, k = frames.shape[:2]
        target = [size, size] if crops == "full" else size
        images = []
        for frame in frames[..., :3].reshape(n * k, *frames.shape[2:-1], 3).cpu().numpy():
            resized = TF.resize(Image.fromarray(np.ascontiguousarray(frame)), target, InterpolationMode.BICUBIC)
            images.append(TF.to_tensor(resized))
        images = torch.stack(images)
        views = images[None] if crops == "full" else take_crops(images, size, crops)  # [views, N*k, 3, S, S]
        normalised = TF.normalize(views.flatten(0, 1), OPENAI_MEAN, OPENAI_STD)
        return normalised.view(len(views), n, k, 3, size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, k = x.shape[:2]
        return self.visual(x.flatten(0, 1)).view(batch, k, -1).mean(dim=1)

    def load_weights(self, path: Path) -> None:
        from open_clip.factory import load_state_dict

        state = load_state_dict(str(path), weights_only=True)  # .safetensors or a torch state dict
        visual = {key.removeprefix("visual."): value for key, value in state.items() if key.startswith("visual.")}
        if not visual:
            raise KeyError("no visual.* tensors: not an open_clip CLIP checkpoint")
        self.visual.load_state_dict(visual)


def _vit_b16_config() -> dict[str, Any]:
    import open_clip

    return {**open_clip.get_model_config(MODEL_NAME), "quick_gelu": True}


def _hf_cached_files() -> list[Path]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return []
    found = [try_to_load_from_cache(HF_REPO, name) for name in HF_FILES]
    return [Path(path) for path in found if isinstance(path, str)]


def _download(folder: Path) -> Path:
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    path = download_pretrained(get_pretrained_cfg(MODEL_NAME, PRETRAINED_TAG), cache_dir=str(folder / "open_clip"))
    if not path:
        raise OSError(f"open_clip returned no file for {MODEL_NAME}/{PRETRAINED_TAG}")
    return Path(path)


def image_contract(size: int) -> InputContract:
    """open_clip's preprocessing for the OpenAI weights (the frames field follows the ``frames`` option)."""
    return InputContract(
        frames="centre",
        resize="short_side",
        resize_size=size,
        crop_size=size,
        interpolation="bicubic (PIL)",
        antialias=True,
        value_range=(0.0, 1.0),
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
    )


@register_backbone(
    "clip",
    contract=image_contract(224),
    options={"frames": 1},
    weights=WeightsSpec(
        file_name="clip_vit_b16_openai.safetensors",
        source=f"open_clip {MODEL_NAME}/{PRETRAINED_TAG} (Hugging Face {HF_REPO})",
        license="MIT (OpenAI CLIP)",
        instructions=f"run once online (open_clip downloads {HF_REPO}), or download {HF_FILES[0]} from "
        f"https://huggingface.co/{HF_REPO} and run `dakd weights import clip {HF_FILES[0]}`",
        download=_download,
        download_host="huggingface.co",
        known_locations=_hf_cached_files,
    ),
    summary="open_clip ViT-B/16 (OpenAI weights) image embedding of the centre frame, 512-d",
)
def clip(contract: InputContract, frames: int) -> OpenClipImage:
    return OpenClipImage(_vit_b16_config(), contract, frames)


TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


@register_backbone(
    "clip_tiny",
    contract=image_contract(TINY_CONFIG["vision_cfg"]["image_size"]),
    options={"frames": 1},
    weights=None,
    summary="test variant: 2-layer ViT, 64x64 input",
    test_variant=True,
)
def clip_tiny(contract: InputContract, frames: int) -> OpenClipImage:
    return OpenClipImage(TINY_CONFIG, contract, frames)
