"""Every registered backbone builds and runs; preprocessing matches the libraries' own transforms;
weights saved from the libraries' own models load and give the libraries' outputs."""

import numpy as np
import pytest
import torch

from extractors.backbones import create_backbone, list_backbones
from extractors.crops import take_crops
from extractors.registry import REGISTRY, InputContract, register_backbone


def random_frames(n, f, h=96, w=128, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, f, h, w, 3), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("name", list_backbones(include_test_variants=True))
def test_every_backbone_builds_and_runs(name):
    parameter_free = REGISTRY[name].parameter_free
    model = create_backbone(name, weights=None if parameter_free else "random")
    offsets = model.frame_offsets(16)
    assert all(0 <= o < 16 for o in offsets)
    frames = random_frames(1, len(offsets), 240, 320)
    modes = ((5, 5), ("full", 1)) if REGISTRY[name].test_variant else ((1, 1), ("full", 1))  # real ones are slow
    for crops, views in modes:
        clips = model.preprocess(frames, crops=crops)
        assert clips.shape[:2] == (views, 1)
        with torch.no_grad():
            features = model(clips.flatten(0, 1).contiguous(memory_format=model.memory_format))
        assert features.shape == (views, model.feature_dim)
        assert torch.isfinite(features).all()
    assert isinstance(model.contract, InputContract) and model.weights_record["random"] != parameter_free


@pytest.mark.parametrize("name", [n for n in list_backbones(include_test_variants=True) if n != "flow"])
def test_rgb_backbones_take_the_same_clips_when_luma_comes_along(name):
    # A run with flow decodes R, G, B and luma together; an RGB backbone must see exactly the RGB-only clips.
    model = create_backbone(name, weights="random")
    frames = random_frames(2, len(model.frame_offsets(16)), 120, 160)
    luma = torch.randint(0, 256, (*frames.shape[:-1], 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with_luma = torch.cat([frames, luma], -1)
    for crops in ("full", 5):
        torch.testing.assert_close(model.preprocess(with_luma, crops), model.preprocess(frames, crops), atol=0, rtol=0)


def test_random_weights_are_identical_in_every_build():
    a, b = create_backbone("i3d_tiny", weights="random"), create_backbone("i3d_tiny", weights="random")
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), key


def test_crop_order_centre_corners_then_flips():
    frames = torch.arange(6 * 8).view(1, 6, 8)
    crops = take_crops(frames, 4, 10)
    assert crops.shape == (10, 1, 4, 4)
    assert torch.equal(crops[0], frames[:, 1:5, 2:6])  # centre
    assert torch.equal(crops[1], frames[:, :4, :4])  # top-left
    assert torch.equal(crops[4], frames[:, 2:, 4:])  # bottom-right
    assert torch.equal(crops[5], crops[0].flip(-1))


def test_s3d_preprocessing_is_the_weights_transforms():
    from torchvision.models.video import S3D_Weights

    model = create_backbone("s3d", weights="random")
    frames = random_frames(2, 16, 120, 170)
    ours = model.preprocess(frames, crops=1)[0]
    reference = S3D_Weights.KINETICS400_V1.transforms()(frames.permute(0, 1, 4, 2, 3))
    torch.testing.assert_close(ours, reference, atol=0, rtol=0)


def test_clip_preprocessing_is_open_clips():
    import open_clip
    from PIL import Image

    _, _, reference_transform = open_clip.create_model_and_transforms(
        "ViT-B-16", pretrained=None, force_quick_gelu=True
    )
    model = create_backbone("clip", weights="random")
    frames = random_frames(3, 1, 150, 211)
    ours = model.preprocess(frames, crops=1)[0, :, 0]
    reference = torch.stack([reference_transform(Image.fromarray(f[0].numpy())) for f in frames])
    torch.testing.assert_close(ours, reference, atol=0, rtol=0)


def test_clip_frame_sampling():
    assert create_backbone("clip_tiny", weights="random").frame_offsets(16) == [8]
    assert create_backbone("clip_tiny", weights="random", frames=4).frame_offsets(16) == [2, 6, 10, 14]


def test_clip_weights_from_open_clip_state_dict(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = create_backbone("clip", weights=path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, None]), reference.encode_image(x), atol=1e-5, rtol=1e-5)
    record = model.weights_record
    assert record["origin"] == "explicit" and len(record["sha256"]) == 64 and not record["random"]


def test_s3d_weights_from_torchvision_state_dict(tmp_path):
    from torchvision.models.video import s3d

    torch.manual_seed(2)
    reference = s3d().eval()
    path = tmp_path / "s3d.pth"
    torch.save(reference.state_dict(), path)
    model = create_backbone("s3d", weights=path)
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        expected = reference.features(x).mean(dim=(2, 3, 4))
        torch.testing.assert_close(
            model(x.contiguous(memory_format=model.memory_format)), expected, atol=1e-4, rtol=1e-4
        )


def test_i3d_r50_weights_from_pytorchvideo_checkpoint(tmp_path):
    from pytorchvideo.models.hub import i3d_r50

    torch.manual_seed(3)
    reference = i3d_r50(pretrained=False).eval()
    path = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": reference.state_dict(), "cfg": "yaml text"}, path)
    model = create_backbone("i3d_r50", weights=path)
    x = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        logits = reference(x)
        ours = model.model.blocks[-1].proj(model(x))  # the head applied to our pooled features
    torch.testing.assert_close(ours, logits, atol=1e-4, rtol=1e-4)


def test_i3d_preprocessing_range_and_crop():
    model = create_backbone("i3d", weights="random")
    frames = torch.zeros(1, 16, 240, 320, 3, dtype=torch.uint8)
    frames[..., 0] = 255
    clips = model.preprocess(frames, crops=10)
    assert clips.shape == (10, 1, 3, 16, 224, 224)
    assert np.allclose(clips[:, :, 0].numpy(), 1.0) and np.allclose(clips[:, :, 1:].numpy(), -1.0)


def test_registration_is_data_and_mistakes_are_errors():
    entry = REGISTRY["clip"]
    assert entry.options == {"frames": 1} and entry.contract.to_dict()["frames"] == "centre"
    assert create_backbone("clip_tiny", weights="random", frames=4).contract.frames == "mean of 4 evenly spaced"
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("i3d", contract=entry.contract, weights=None, summary="again")(lambda contract: None)
    from dakd.errors import DakdError

    with pytest.raises(DakdError, match="takes no option frames"):
        create_backbone("i3d_tiny", weights="random", frames=2)


def test_i3d_max_pools_the_same_network_over_space_and_shares_i3ds_weights():
    mean, maximum = create_backbone("i3d", weights="random"), create_backbone("i3d_max", weights="random")
    assert (
        REGISTRY["i3d_max"].weights_key == "i3d" and maximum.weights_record["sha256"] == mean.weights_record["sha256"]
    )
    x = torch.randn(1, 3, 16, 64, 96)
    with torch.no_grad():
        grid = mean.mixed_5c(x)  # [1, 1024, 2, 2, 3]
        torch.testing.assert_close(maximum(x), grid.mean(dim=2).amax(dim=(2, 3)))
        torch.testing.assert_close(mean(x), grid.mean(dim=(2, 3, 4)))
